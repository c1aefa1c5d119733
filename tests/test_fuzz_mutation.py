"""Mutation fuzz of every public entry point, seeded from real traffic (``tests/mutants.py``), and
the minimal cases of what it found.

Each entry point gets mutants of the corpus' streams and bodies (bit flips, cuts, splices, JSON
values swapped for ``-1``/``true``/``1e999``/``"\\ud800"``/…, changed line ends, moved events,
terminal escapes), with every registered dialect (``dialects.names()``, by name and as the
``Dialect``, and detected), and may answer only as documented: the core raises nothing but its own typed
errors (``StreamShimError``); ``check_stream``, ``meaning``, ``compare`` raise nothing;
``render_lines`` raises ``ValueError`` for a body that is no LLM response, ``check_side`` for a
corrupt content-encoding; the CLI exits 0, 1 or 2, every line it prints on stderr is one
``streamshim: …`` line, and no line of a report is unsafe for a terminal.

The default run tries 200 mutants per entry point from a fixed seed (a few seconds);
``STREAMSHIM_FUZZ_EXAMPLES=N`` raises that, ``STREAMSHIM_FUZZ_SEED`` picks another seed. The
``fuzz``-marked campaign runs every entry point in turn for ``STREAMSHIM_FUZZ_SECONDS`` from a
fresh seed and keeps every distinct failure (with its inputs, in ``STREAMSHIM_FUZZ_OUT``) instead
of stopping at the first::

    STREAMSHIM_FUZZ_SECONDS=1800 .venv/bin/pytest -m fuzz tests/test_fuzz_mutation.py
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import chunk, completion, delta, sse
from mitmproxy.io import tnetstring
from mitmproxy.test import taddons, tflow, tutils
from mutants import DEEP, Mutator, seeds
from shim_addons import StreamShim
from streamshim import aggregate, aggregate_with_problems, cli, dialects, synthesize, view
from streamshim.check import Report, Side, check_side, check_stream, codes
from streamshim.dialects.base import Asked
from streamshim.errors import (
    BadRecording,
    BadResponse,
    MalformedEvent,
    StreamError,
    StreamShimError,
    TruncatedStream,
)
from streamshim.framing import MAX_JSON_DEPTH, decode_json, json_utf8
from streamshim.meaning import compare, diff_meaning, meaning
from streamshim.mitm.recording import flow_sides, read_flows, replay_flow
from streamshim.mitm.scrub import scrub_body
from streamshim.mitm.state import FlowState
from streamshim.passthrough import EventFilter, judge

FUZZ = int(os.environ.get("STREAMSHIM_FUZZ_EXAMPLES", "0"))
SEED = int(os.environ.get("STREAMSHIM_FUZZ_SEED", "20240612"))
# every registered dialect, by name and as the object, and None (detected): read from the registry,
# so a dialect registered later is fuzzed too
NAMES: list[Any] = [None, *dialects.names()]
APIS: list[Any] = [*NAMES, *dialects.DIALECTS]
RECORDINGS = Path(__file__).resolve().parents[1] / "recordings"


def unsafe_chars(text: str) -> list[str]:
    """Characters a terminal may act on: controls (but newline and tab), bidi overrides,
    unassigned and surrogate code points: everything ``str.isprintable`` rejects."""
    return sorted({c for c in text if not c.isprintable() and c not in "\n\t"})


# -- the entry points: each makes its inputs with the Mutator and checks the answer -----------------


def _aggregated(out: Any, dialect: dialects.Dialect) -> None:
    """What the addon does with an aggregated response: its meaning, and the JSON body."""
    assert isinstance(out, dict)
    dialect.meaning(out).as_dict()
    json_utf8(json.dumps(out, ensure_ascii=False))


def fz_aggregate(m: Mutator) -> None:
    body, _ = m.stream()
    api = m.rng.choice(APIS)
    n = m.rng.choice((None, None, 1, 2, 10**18))
    with_problems = m.rng.random() < 0.5
    m.notes.append(f"api={api!r}, n={n}, {'aggregate_with_problems' if with_problems else 'aggregate'}")
    dialect = dialects.resolve(api, body=body)
    assert dialect is not None
    try:
        if with_problems:
            out, problems = aggregate_with_problems(body, api, n=n)
            assert all(isinstance(p, str) for p in problems)
        else:
            out = aggregate(body, api, n=n)
        _aggregated(out, dialect)
    except StreamError as exc:
        assert exc.kind in ("upstream_error", "malformed", "truncated", "not_sse") and exc.message
        assert exc.partial is None or isinstance(exc.partial, dict)
        assert not unsafe_chars(exc.message), exc.message
        # the body a JSON client gets instead
        err = dialect.error_body(
            exc.describe(), exc.kind, partial=exc.partial, upstream_error=exc.upstream_error
        )
        json_utf8(json.dumps(err, ensure_ascii=False))


def fz_synthesize(m: Mutator) -> None:
    data, _ = m.body() if m.rng.random() < 0.7 else m.stream()
    try:
        obj = decode_json(data)
    except ValueError:
        try:
            obj = aggregate(data)
        except StreamShimError:
            obj = decode_json(m.seed_body())
    api = m.rng.choice(APIS)
    usage = m.rng.random() < 0.5
    chunk_chars = m.rng.choice((1, 3, 16, 1000))
    m.notes.append(f"api={api!r}, usage={usage}, chunk_chars={chunk_chars}")
    dialect = dialects.resolve(api, payload=obj)
    assert dialect is not None
    try:
        out = synthesize(obj, api, usage=usage, chunk_chars=chunk_chars)
    except BadResponse as exc:
        assert str(exc)
        return
    assert isinstance(out, bytes) and out
    dec = dialect.framing.decoder()
    assert dec.feed(out) and not dec.close() and not dec.problems  # whole events, nothing left over
    with contextlib.suppress(StreamError):  # e.g. a body with an "error" beside its choices
        _aggregated(aggregate(out, dialect), dialect)


def fz_check(m: Mutator) -> None:
    body, _ = m.stream()
    api = m.rng.choice(APIS)
    usage, n = m.rng.choice((None, True, False)), m.rng.choice((None, 1, 3, 10**18))
    m.notes.append(f"api={api!r}, usage_asked={usage}, n={n}")
    report = check_stream(body, api, usage_asked=usage, n=n)
    assert isinstance(report, Report)
    assert all(f.code in codes(report.api) for f in report.findings)
    assert report.summary() and all(f.line() for f in report.findings)
    # bounded by the body (a few per tool call or choice), never one per choice of a huge n
    assert len(report.findings) <= 3 * len(body) + 40
    assert not unsafe_chars("\n".join(f.line() for f in report.findings))


def fz_repair(m: Mutator) -> None:
    """Live repair (and the injected usage taken out): every dialect's repairer on the event filter,
    the mutant fed in arbitrary pieces, as mitmproxy hands a stream over; then the judgement."""
    body, _ = m.stream()
    dialect = m.rng.choice(dialects.DIALECTS)
    strip, step, clean = m.rng.random() < 0.5, m.rng.choice((1, 7, 64, 4096)), m.rng.random() < 0.8
    m.notes.append(f"api={dialect.name!r}, strip_usage={strip}, pieces of {step} B, clean={clean}")
    repairer = dialect.repairer(Asked(stream=True), strip_usage=strip, repair=True)
    assert repairer is not None
    f = EventFilter(dialect, repairer)
    out = b"".join(f.feed(body[i : i + step]) for i in range(0, len(body), step)) + f.close(clean)
    assert isinstance(out, bytes)
    assert all(isinstance(n, int) and n > 0 for n in repairer.counts.values())
    verdict = judge(out, dialect)
    assert verdict.summary() and not unsafe_chars(verdict.summary())


def _headers(m: Mutator, body: bytes) -> tuple[list[list[str]], bytes]:
    headers = [m.rng.choice((["content-type", "text/event-stream"], ["content-type", "application/json"]))]
    roll = m.rng.random()
    if roll < 0.15:
        headers.append(["content-encoding", "gzip"])
        body = gzip.compress(body) if m.rng.random() < 0.6 else body  # a corrupt one otherwise
    elif roll < 0.25:
        headers.append(["content-encoding", m.rng.choice(("br", "deflate", "zstd", "x-unknown"))])
    m.notes.append(f"headers={headers}")
    return headers, body


def fz_meaning(m: Mutator) -> None:
    a, _ = m.any_body()
    b, _ = m.any_body()
    ha, a = _headers(m, a)
    hb, b = _headers(m, b)
    api = m.rng.choice(APIS)
    m.notes.append(f"api={api!r}")
    ma = meaning(500, ha, a, api)
    mb = meaning(200, hb, b)
    for x in (ma, mb):
        assert isinstance(x, dict) and "status" in x
    diffs, notes = compare(ma, mb)
    assert all(isinstance(d, str) for d in diffs + notes)
    assert not unsafe_chars("\n".join(diff_meaning(ma, mb)))


def fz_view(m: Mutator) -> None:
    body, _ = m.any_body()
    api = m.rng.choice(NAMES)
    default = m.rng.choice(NAMES)
    m.notes.append(f"api={api!r}, default_api={default!r}")
    assert view.looks_like_stream(body) in (True, False)
    try:
        lines = view.render_lines(body, api, default_api=default)
        text = view.render(body, api, default_api=default)
    except ValueError as exc:  # documented: not an LLM stream or response
        assert not isinstance(exc, StreamShimError) and str(exc)
        return
    assert all(isinstance(s, str) and isinstance(t, str) for line in lines for s, t in line)
    assert isinstance(text, str)


def fz_check_side(m: Mutator) -> None:
    body, _ = m.any_body()
    headers, body = _headers(m, body)
    request = m.rng.choice(m.seeds.requests)
    if m.rng.random() < 0.5:
        request = m.mutate(request)[0]
    api = m.rng.choice(NAMES)
    m.notes.append(f"api={api!r}")
    try:
        report = check_side(Side("upstream", request, 200, headers, body), api)
    except ValueError as exc:  # documented: a corrupt content-encoding
        assert len(headers) == 2 and str(exc)
        return
    assert report is None or isinstance(report, Report)


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``cli.main`` in this process, with a UTF-8 stdout and stderr as strict as a terminal's."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
        out.flush()
        err.flush()
    stdout = out.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    stderr = err.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    return code, stdout, stderr


def fz_cli(m: Mutator) -> None:
    rng = m.rng
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def put(name: str, data: bytes) -> str:
            (d / name).write_bytes(data)
            return str(d / name)

        cmd = rng.choice(("aggregate", "synthesize", "check", "check", "diff", "replay", "scrub"))
        api = ["--api", rng.choice(dialects.names())] if rng.random() < 0.3 else []
        if cmd == "aggregate":
            args = ["aggregate", put("a.sse", m.stream()[0]), *api]
            args += ["--partial"] if rng.random() < 0.5 else []
        elif cmd == "synthesize":
            args = ["synthesize", put("a.json", m.body()[0]), *api]
            args += ["--include-usage"] if rng.random() < 0.5 else []
        elif cmd == "check":
            data = m.flow_file()[0] if rng.random() < 0.5 else m.stream()[0]
            extra = rng.choice(([], ["--all"], ["--usage-asked", "--n", "2"]))
            args = ["check", put("a", data), *api, *extra]
        elif cmd == "diff":
            a = m.flow_file()[0] if rng.random() < 0.3 else m.any_body()[0]
            b = m.flow_file()[0] if rng.random() < 0.3 else m.any_body()[0]
            args = ["diff", put("a", a), put("b", b), *rng.choice(([], ["--side", "client"]))]
        elif cmd == "replay":
            args = ["replay", put("a.flow", m.flow_file()[0]), *(["--update"] if rng.random() < 0.2 else [])]
        else:
            args = ["scrub", put("a.flow", m.flow_file()[0]), str(d / "out.flow"), "--field", "user"]
            args += ["--fixture"] if rng.random() < 0.5 else []
        m.notes.append(" ".join(args))
        code, stdout, stderr = run_cli(args)
    assert code in (0, 1, 2), (code, stderr)
    for line in stderr.splitlines():
        assert line.startswith("streamshim: "), line
    assert not unsafe_chars(stderr), stderr
    if cmd in ("check", "diff", "replay"):
        assert not unsafe_chars(stdout), stdout


ENTRY_POINTS: dict[str, Callable[[Mutator], None]] = {
    "aggregate": fz_aggregate,
    "synthesize": fz_synthesize,
    "check_stream": fz_check,
    "meaning": fz_meaning,
    "view": fz_view,
    "check_side": fz_check_side,
    "cli": fz_cli,
    "repair": fz_repair,
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_mutants(name: str) -> None:
    m = Mutator(random.Random(f"{SEED}-{name}"), seeds())
    for i in range(FUZZ or 200):
        m.new_case()
        try:
            ENTRY_POINTS[name](m)
        except Exception as exc:
            raise AssertionError(f"{name}, mutant {i} of seed {SEED}:\n{m.describe()}") from exc


@pytest.mark.fuzz
def test_campaign(tmp_path: Path) -> None:
    """Every entry point in turn, by time, from a fresh seed; every distinct failure is kept
    (by entry point, exception type and the line it came from) with the inputs that made it."""
    seconds = float(os.environ.get("STREAMSHIM_FUZZ_SECONDS", "600"))
    seed = int(os.environ.get("STREAMSHIM_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    out = Path(os.environ.get("STREAMSHIM_FUZZ_OUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    m = Mutator(random.Random(seed), seeds())
    found: dict[tuple[str, str, str], str] = {}
    counts = dict.fromkeys(ENTRY_POINTS, 0)
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        for name, fn in ENTRY_POINTS.items():
            counts[name] += 1
            m.new_case()
            try:
                fn(m)
            except Exception as exc:
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                key = (name, type(exc).__name__, f"{frame.filename}:{frame.lineno}")
                if key not in found:
                    found[key] = f"{' '.join(key)}\n{m.describe()}\n{traceback.format_exc()}"
                    (out / f"finding-{len(found)}.txt").write_text(found[key], encoding="utf-8")
                    for n, (_, data) in enumerate(m.made):
                        (out / f"finding-{len(found)}-input{n}.bin").write_bytes(data)
    took = time.monotonic() - start
    summary = f"seed {seed}: {sum(counts.values())} cases in {took:.0f} s {counts}: {len(found)} finding(s)"
    print(summary)
    (out / "summary.txt").write_text(summary + "\n", encoding="utf-8")
    assert not found, summary + "\n\n" + "\n\n".join(found.values())


# -- what the fuzz found: the minimal cases ----------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "true", "1e999"])
def test_a_first_chunk_with_choices_of_another_type(value: str) -> None:
    """``dialects.detect`` iterated ``choices`` whatever it was: TypeError out of ``aggregate``
    (found in 7 s by the issue's own mutation fuzz, again here)."""
    payload = f'{{"choices": {value}}}'
    assert dialects.detect(json.loads(payload)) is None
    body = f"data: {payload}\n\ndata: [DONE]\n\n".encode()
    with pytest.raises(MalformedEvent) as exc:
        aggregate(body)
    assert exc.value.event_number == 1 and "unexpected shape" in exc.value.message
    assert [f.code for f in check_stream(body).errors] == ["choices-missing"]
    assert "BROKEN (malformed)" in view.render(body)
    assert meaning(200, [], body)["error"].startswith("malformed")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, len(DEEP) // 2])
def test_json_nested_too_deep_is_invalid_json(depth: int) -> None:
    """``json.loads`` raises RecursionError past ~1000 levels (and walking a value that deep
    fails later): a RecursionError out of aggregate, check, meaning, the view and the CLI."""
    deep = "[" * depth + "]" * depth
    body = sse(chunk(delta(role="assistant", content="x"), x=0)).replace(b'"x":0', f'"x":{deep}'.encode())
    with pytest.raises(MalformedEvent, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        aggregate(body)
    assert [f.code for f in check_stream(body).errors] == ["malformed-json"]
    assert meaning(200, [], deep.encode())["shape"] == "other"
    with pytest.raises(ValueError, match="not JSON"):
        view.render(deep.encode())
    ok = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert aggregate(body.replace(deep.encode(), ok.encode()))["x"] == decode_json(ok)


def test_check_on_an_integer_too_long_to_parse() -> None:
    """Python refuses integers of more than 4300 digits with a ValueError that is no
    JSONDecodeError: the check read ``exc.msg`` of it (AttributeError)."""
    body = b'data: {"created": ' + b"9" * 5000 + b"}\n\ndata: [DONE]\n\n"
    finding = check_stream(body).findings[0]
    assert (finding.code, finding.event) == ("malformed-json", 1)
    assert "Exceeds the limit (4300 digits)" in finding.message


@pytest.mark.parametrize("index", ['"x"', "[-1]", '{"index": -1}', "true"])
def test_check_a_choice_index_that_is_not_an_integer(index: str) -> None:
    """An unhashable index (TypeError in a dict lookup) or a string beside an integer one
    (TypeError sorting them): a finding now, and the choice is checked as choice 0."""
    first = json.dumps(chunk(delta(role="assistant", content="a"))).replace('"index": 0', f'"index": {index}')
    body = f"data: {first}\n\n".encode() + sse(chunk(delta(index=1, role="assistant", finish_reason="stop")))
    report = check_stream(body)
    assert [(f.code, f.event) for f in report.findings] == [
        ("choice-bad-index", 1),
        ("no-finish-reason", None),
    ]
    assert report.findings[1].message == "choice 0 never got a finish_reason"


def test_check_with_a_huge_n_lists_a_few_missing_choices() -> None:
    """n came from the request: n=10**18 looped over every index it asked for."""
    body = sse(chunk(delta(role="assistant", content="a", finish_reason="stop")))
    missing = [f.message for f in check_stream(body, n=10**18).findings if f.code == "choice-missing"]
    assert len(missing) == 17
    assert missing[0] == f"n={10**18} asked, choice 1 never appeared"
    assert missing[-1] == f"n={10**18} asked, {10**18 - 17} more choices never appeared"
    assert len(check_stream(body, n=3).findings) == 2  # small n: one finding per choice, as before


@pytest.mark.parametrize(
    "resp",
    [
        {"choices": -1},
        {"choices": [1, None]},
        {"choices": [{"message": -1, "finish_reason": "stop"}]},
        {"choices": [{"message": {"tool_calls": -1}}]},
        {"choices": [{"message": {"tool_calls": [1, {"function": -1}, {"function": {"name": "f"}}]}}]},
    ],
)
def test_meaning_of_a_body_of_unexpected_shape(resp: dict[str, Any]) -> None:
    """``meaning`` called ``.get`` on whatever ``choices`` held (AttributeError, TypeError): a
    value of another type now means itself, so two bodies still compare."""
    m = meaning(200, [["content-type", "application/json"]], json.dumps(resp).encode())
    assert m["shape"] == "json" and "choices" in m
    diffs, _ = compare(m, meaning(200, [], json.dumps(completion()).encode()))
    assert diffs and all(isinstance(d, str) for d in diffs)


def test_a_lone_surrogate_round_trips() -> None:
    """``"\\ud800"`` is valid JSON but has no UTF-8 form: ``synthesize`` failed (BadResponse for
    a valid completion), the CLI's JSON output and scrubbing raised UnicodeEncodeError."""
    message = {"role": "assistant", "content": "a\ud800b"}
    resp = completion({"index": 0, "message": message, "finish_reason": "stop"})
    body = synthesize(resp)
    assert b'"content":"a\\ud800b"' in body
    assert aggregate(body) == resp
    masked = scrub_body(json.dumps({"user": "u", "x": "\udfff"}).encode(), frozenset({"user"}))
    assert json.loads(masked) == {"user": "[scrubbed]", "x": "\udfff"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.sse"
        path.write_bytes(body)
        code, out, err = run_cli(["aggregate", str(path)])
    assert (code, err) == (0, "") and json.loads(out) == resp


def _flow_state() -> dict[str, Any]:
    data = (RECORDINGS / "llama-tool__stream-client__upstream-json.flow").read_bytes()
    state = tnetstring.loads(data)
    assert isinstance(state, dict)
    return state


def _flow(state: dict[str, Any]) -> Any:
    return read_flows(io.BytesIO(tnetstring.dumps(state)))[0]


def test_damaged_flow_files_are_bad_recordings() -> None:
    """mitmproxy's reader raises FlowReadException, KeyError, AttributeError, … on damaged
    files, and takes metadata of any type: the CLI printed tracebacks."""
    for data in (b"garbage", b"5:hello,", b"12:3:abc;1:x,}", tnetstring.dumps([1, 2])):
        with pytest.raises(BadRecording, match="not a readable mitmproxy flow file"):
            read_flows(io.BytesIO(data))
    state = _flow_state()
    del state["is_replay"]
    with pytest.raises(BadRecording, match="KeyError: 'is_replay'"):
        _flow(state)
    for value, what in ((-1, "metadata 'streamshim' is a int"), ({"client_request": True}, "client_request")):
        state = _flow_state()
        state["metadata"] = {"streamshim": value}
        f = _flow(state)
        for use in (flow_sides, replay_flow):
            with pytest.raises(BadRecording, match=what):
                use(f)
    state = _flow_state()
    state["metadata"]["streamshim"]["client_response"]["headers"] = [["x", 1]]
    with pytest.raises(BadRecording, match=r"client_response\.headers holds a list"):
        flow_sides(_flow(state))
    state = _flow_state()
    # a key this version does not know is a newer version's (FlowState keeps it, Settings leaves
    # it out): replayed with the settings it knows
    state["metadata"]["streamshim"]["settings"]["promote_pool_calls"] = True
    state["metadata"]["streamshim"]["newer"] = [1]
    f = _flow(state)
    kept = FlowState.of(f)
    assert kept is not None and kept.extra["newer"] == [1]
    assert replay_flow(f).ok
    for settings, what in (
        ({"chunk_chars": -1}, "bad chunk_chars -1"),
        ({"upstream": "both"}, "bad upstream 'both'"),
        ({"keepalive": "yes"}, "bad keepalive 'yes'"),
        ([], "settings is a list"),
    ):
        state["metadata"]["streamshim"]["settings"] = settings
        with pytest.raises(BadRecording, match=what):
            replay_flow(_flow(state))
    for key, value in (("asked_n", "2"), ("client_stream", 1), ("upstream_status", True), ("api", 3)):
        state = _flow_state()
        state["metadata"]["streamshim"][key] = value
        with pytest.raises(BadRecording, match=f"metadata streamshim.{key} is a {type(value).__name__}"):
            flow_sides(_flow(state))
    state = _flow_state()
    state["metadata"] = [1]
    with pytest.raises(BadRecording, match="the flow's metadata is a list"):
        flow_sides(_flow(state))


def test_the_addon_on_invalid_json_from_the_upstream() -> None:
    """Found by replaying mutated recordings: an upstream body that starts like JSON but is not
    JSON (cut, invalid UTF-8) made the response hook raise JSONDecodeError for a stream client
    (the client got the broken bytes instead of an error), and a request nested too deeply made
    the request hook raise RecursionError."""
    shim = StreamShim()
    with taddons.context(shim):
        for content in (b'{"id": "x", "choi', b'{"id": "\xff"}'):
            f = tflow.tflow()
            f.request.path, f.request.method = "/v1/chat/completions", "POST"
            f.request.content = b'{"model": "m", "stream": true}'
            shim.request(f)
            f.response = tutils.tresp(content=content, headers=[(b"content-type", b"application/json")])
            shim.responseheaders(f)
            shim.response(f)
            assert f.response.status_code == 502
            err = f.response.json()["error"]
            assert err["code"] == "bad_response" and "not valid JSON" in err["message"]
        f = tflow.tflow()
        f.request.path, f.request.method = "/v1/chat/completions", "POST"
        f.request.content = b'{"messages": ' + DEEP.encode() + b"}"
        shim.request(f)  # not JSON it can read: passed through untouched
        assert "streamshim" not in f.metadata


def test_the_addon_passes_invalid_json_on_to_a_json_client(tmp_path: Path) -> None:
    """The other path that parsed such a body: promote_tool_calls for a JSON client raised
    JSONDecodeError; the body is passed on as it came (as any JSON answer to a JSON client), and
    the flow says why nothing was promoted."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: promote\n    upstream: as-requested\n    promote_tool_calls: true\n")
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(rules))
        f = tflow.tflow()
        f.request.path, f.request.method = "/v1/chat/completions", "POST"
        f.request.content = b'{"model": "m"}'
        shim.request(f)
        json_type = [(b"content-type", b"application/json")]
        f.response = tutils.tresp(content=b'{"id": "x", "choi', headers=json_type)
        shim.responseheaders(f)
        shim.response(f)
        assert (f.response.status_code, f.response.content) == (200, b'{"id": "x", "choi')
        assert "not valid JSON" in f.comment and "tool calls not promoted" in f.comment


def test_the_addon_with_a_lone_surrogate(tmp_path: Path) -> None:
    """Found by replaying mutated recordings: the aggregated JSON for the client, and a rewritten
    request, were encoded with a strict UTF-8 encode: UnicodeEncodeError in the hooks."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: to-stream\n    upstream: stream\n")
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(rules))
        f = tflow.tflow()
        f.request.path, f.request.method = "/v1/chat/completions", "POST"
        f.request.content = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'
        shim.request(f)
        assert f.request.json() == {
            "model": "m",
            "messages": [{"role": "user", "content": "\ud800"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body = sse(chunk(delta(role="assistant", content="a\ud800", finish_reason="stop")))
        f.response = tutils.tresp(content=body, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        shim.response(f)
        assert f.response.status_code == 200
        assert f.response.json()["choices"][0]["message"]["content"] == "a\ud800"


# -- found porting the fuzz to the dialect seam ------------------------------------------------------


def test_a_huge_n_from_the_request_is_never_looped_over() -> None:
    """``n`` comes from the client's request; the check looped over every index it asked for,
    and so did the aggregator (``Asked.n``: a stream that ends without [DONE] before n choices
    is cut) and the repairer's end of stream: ``n=10**18`` hung the response hook."""
    body = sse(chunk(delta(role="assistant", content="a", finish_reason="stop")), done=False)
    with pytest.raises(TruncatedStream) as exc:
        aggregate(body, n=10**18)
    assert exc.value.message.endswith(
        f"choice(s) 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 and {10**18 - 17} more "
        f"of n={10**18} never arrived"
    )
    with pytest.raises(TruncatedStream, match=r"choice\(s\) 1, 2 of n=3 never arrived$"):
        aggregate(body, n=3)
    repairer = dialects.get("chat").repairer(Asked(True, n=10**18), strip_usage=False, repair=True)
    assert repairer is not None
    assert repairer.event(body) == body
    end = json.loads(repairer.end(clean=True).removeprefix(b"data: "))
    assert f"16 and {10**18 - 17} more without finish_reason" in end["error"]["message"]


def test_findings_and_differences_are_terminal_safe() -> None:
    """A finding quotes the stream (a tool call's name, a value) and a difference names the
    body's own keys: both reached mitmdump's log and the CLI's report with their escapes."""
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f\x1b[2J", "arguments": "{"}}
    body = sse(chunk(delta(role="assistant", tool_calls=[call], finish_reason="tool_calls")))
    (finding,) = check_stream(body).findings
    assert finding.code == "tool-call-bad-arguments" and "(f\\x1b[2J)" in finding.message
    lines = diff_meaning({"usage": {"a\u202e": 1}}, {"usage": {"a\u202e": 2}})
    assert lines == ["usage.a\\u202e: recorded 1, now 2"]


@pytest.mark.parametrize("choices", [-1, None, "x", [1, None], [{"index": 0}, 7]])
def test_outputs_of_another_type_mean_themselves(choices: Any) -> None:
    """A body whose ``choices`` is no list of objects is no answer a client can read: it meant
    ``choices: []`` (the same as an empty answer); it is compared as it is now, and the view
    says so."""
    body = json.dumps({"object": "chat.completion", "choices": choices}).encode()
    m = meaning(200, [], body)
    assert m["choices"] == choices
    assert compare(m, meaning(200, [], json.dumps(completion()).encode()))[0]
    assert "choices is not a list of objects" in view.render(body)


def test_the_addon_on_a_request_its_content_encoding_does_not_fit() -> None:
    """``get_content`` raises ValueError for a gzip-labelled body that is not gzip: the request
    hook raised it; such a request is passed through untouched, as one that is not JSON."""
    shim = StreamShim()
    with taddons.context(shim):
        f = tflow.tflow()
        f.request.path, f.request.method = "/v1/chat/completions", "POST"
        f.request.headers["content-encoding"] = "gzip"
        f.request.raw_content = b'{"model": "m"}'
        shim.request(f)
        assert "streamshim" not in f.metadata and f.request.raw_content == b'{"model": "m"}'
