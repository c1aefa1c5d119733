"""Recordings: captured mitmproxy flows as scrubbed, replayable regression fixtures.

- ``scrub_flow``: mask secrets everywhere in a flow, the originals streamshim keeps included.
- ``to_fixture``: put the upstream's original response where mitmproxy's server replay serves it
  from (``flow.response``) and keep what the client received in ``metadata["streamshim"]``.
- ``replay_flow``: run a recorded upstream response through the current addon and compare what a
  client gets now with what the recording says it got, by meaning (status, content, reasoning,
  tool calls, finish_reason, usage, error).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mitmproxy import http, io
from mitmproxy.http import Headers

from . import dialects
from .check import Report, check_stream, request_expectations
from .meaning import _short, decoded, diff_meaning, is_sse, meaning

META = "streamshim"
MASK = "[scrubbed]"
SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "cookie", "set-cookie", "proxy-authorization", "x-goog-api-key"}
)
SECRET_QUERY = frozenset({"key", "api-key", "api_key", "access_token"})
FLOW_SUFFIXES = (".flow", ".flows", ".mitm")


# -- scrub --------------------------------------------------------------------------------------


def scrub_flow(flow: http.HTTPFlow, headers: Iterable[str] = (), fields: Iterable[str] = ()) -> None:
    names = SECRET_HEADERS | {h.lower() for h in headers}
    field_names = frozenset(fields)
    _scrub_headers(flow.request.headers, names)
    query = flow.request.query
    for key in list(query.keys()):
        if key.lower() in SECRET_QUERY:
            query.set_all(key, [MASK] * len(query.get_all(key)))
    if field_names and flow.request.raw_content:
        flow.request.content = scrub_body(flow.request.get_content(strict=False) or b"", field_names)
    if flow.response is not None:
        _scrub_headers(flow.response.headers, names)
        if field_names and flow.response.raw_content:
            flow.response.content = scrub_body(flow.response.get_content(strict=False) or b"", field_names)
    state = flow.metadata.get(META)
    if isinstance(state, dict):
        for key in ("client_request", "upstream_response"):
            if isinstance(state.get(key), bytes) and field_names:
                state[key] = scrub_body(state[key], field_names)
        for key in ("upstream_headers",):
            if isinstance(state.get(key), list):
                state[key] = [[k, MASK if k.lower() in names else v] for k, v in state[key]]
        client = state.get("client_response")
        if isinstance(client, dict):
            client["headers"] = [[k, MASK if k.lower() in names else v] for k, v in client.get("headers", [])]
            if field_names and isinstance(client.get("body"), bytes):
                client["body"] = scrub_body(client["body"], field_names)


def _scrub_headers(headers: Headers, names: frozenset[str] | set[str]) -> None:
    for name in list(headers.keys()):
        if name.lower() in names:
            headers.set_all(name, [MASK] * len(headers.get_all(name)))


def _mask(obj: Any, fields: frozenset[str]) -> tuple[Any, bool]:
    if isinstance(obj, dict):
        changed = False
        out = {}
        for k, v in obj.items():
            if k in fields:
                out[k] = MASK
                changed = True
            else:
                out[k], c = _mask(v, fields)
                changed |= c
        return out, changed
    if isinstance(obj, list):
        items = [_mask(v, fields) for v in obj]
        return [v for v, _ in items], any(c for _, c in items)
    return obj, False


def scrub_body(body: bytes, fields: frozenset[str]) -> bytes:
    """Mask JSON fields in a JSON body or in the ``data:`` lines of an SSE body. Bytes that hold no
    such field are returned unchanged."""
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if obj is not None:
        masked, changed = _mask(obj, fields)
        return json.dumps(masked, ensure_ascii=False).encode() if changed else body
    lines = body.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"data:"):
            try:
                item = json.loads(line[5:])
            except ValueError:
                continue
            masked, changed = _mask(item, fields)
            if changed:
                lines[i] = b"data: " + json.dumps(masked, ensure_ascii=False).encode()
    return b"\n".join(lines)


# -- fixture form -------------------------------------------------------------------------------


def to_fixture(flow: http.HTTPFlow) -> None:
    """Serve-ready form: ``flow.response`` becomes the upstream's original response, and what the
    client received moves to ``metadata["streamshim"]["client_response"]``. Idempotent."""
    state = flow.metadata.get(META)
    resp = flow.response
    if not isinstance(state, dict) or resp is None or state.get("fixture"):
        return
    if flow.error is not None and state.get("mode") in ("aggregate", "synthesize", "untouched"):
        # the upstream broke while the body was being buffered: mitmproxy answered the client
        # with its own 502, which is not in the flow
        body = json.dumps({"error": {"message": f"mitmproxy: {flow.error.msg}"}}).encode()
        state["client_response"] = {
            "status": 502,
            "headers": [["content-type", "application/json"]],
            "body": body,
        }
    else:
        state["client_response"] = _response_record(resp)
    _restore_upstream(resp, state)
    resp.stream = False
    state["fixture"] = True


def _restore_upstream(resp: http.Response, state: dict[str, Any]) -> None:
    """Give ``resp`` the upstream's original status, headers and body, as far as they were kept."""
    if state.get("upstream_headers") is not None:
        resp.headers = Headers([(k.encode(), v.encode()) for k, v in state["upstream_headers"]])
    if "upstream_status" in state:
        resp.status_code = int(state["upstream_status"])
    if state.get("upstream_response") is not None:
        resp.raw_content = state["upstream_response"]


def _response_record(resp: http.Response) -> dict[str, Any]:
    return {
        "status": resp.status_code,
        "headers": [[k, v] for k, v in resp.headers.items(multi=True)],
        "body": resp.raw_content or b"",
    }


def read_flows(source: Path | BinaryIO) -> list[http.HTTPFlow]:
    """The HTTP flows of a flow file, given as a path or an open binary file."""
    if isinstance(source, Path):
        with source.open("rb") as fh:
            return read_flows(fh)
    return [f for f in io.FlowReader(source).stream() if isinstance(f, http.HTTPFlow)]


def write_flows(path: Path, flows: Iterable[http.HTTPFlow]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        writer = io.FlowWriter(fh)
        for f in flows:
            writer.add(f)
    tmp.replace(path)


def flow_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.suffix in FLOW_SUFFIXES)
        else:
            yield p


# -- the two sides of a flow ---------------------------------------------------------------------


@dataclass
class Side:
    """One exchange of a flow: what was asked (request body) and the response (as sent)."""

    name: str  # "upstream" or "client"
    request: bytes
    status: int
    headers: list[list[str]]
    body: bytes  # as on the wire (content-encoding not removed)


def flow_sides(flow: http.HTTPFlow) -> dict[str, Side]:
    """The upstream exchange (what the server was asked and answered) and the client exchange
    (what the client asked and got), for a flow as mitmproxy saved it or in fixture form. A flow
    streamshim did not touch has the same exchange on both sides."""
    if flow.response is None:
        return {}
    state = flow.metadata.get(META) or {}
    up = _response_record(_upstream_response(flow, state))
    client = expected_response(flow)
    sent = flow.request.raw_content or b""
    asked = state.get("client_request")
    return {
        "upstream": Side("upstream", sent, up["status"], up["headers"], up["body"]),
        "client": Side(
            "client",
            asked if asked is not None else sent,
            client["status"],
            client["headers"],
            client["body"],
        ),
    }


def check_side(side: Side, api: str | None = None, **expect: Any) -> Report | None:
    """The conformance report of one side's stream; ``None`` when that side is not SSE.
    ``expect`` (usage_asked, n) overrides what the side's request asked for. Raises ``ValueError``
    for a body whose content-encoding is corrupt."""
    body = decoded(side.headers, side.body)
    if not is_sse(side.headers, body):
        return None
    usage, n = request_expectations(side.request) if side.request else (None, None)
    kwargs = {"usage_asked": usage, "n": n} | {k: v for k, v in expect.items() if v is not None}
    return check_stream(body, api, **kwargs)


def check_flow(flow: http.HTTPFlow) -> dict[str, Report]:
    """Check the upstream's stream and, when streamshim made or changed it, the client's."""
    mod = dialects.for_path(flow.request.path)
    out: dict[str, Report] = {}
    seen: set[bytes] = set()
    for name, side in flow_sides(flow).items():
        if side.body in seen:
            continue
        seen.add(side.body)
        try:
            report = check_side(side, mod.NAME if mod else None)
        except ValueError:
            continue  # undecodable: the conversion already said so on the flow
        if report is not None:
            out[name] = report
    return out


# -- replay -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    diffs: list[str] = field(default_factory=list)
    now: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.diffs


def expected_response(flow: http.HTTPFlow) -> dict[str, Any]:
    """What the recording says the client received."""
    state = flow.metadata.get(META) or {}
    if isinstance(state.get("client_response"), dict):
        return dict(state["client_response"])
    assert flow.response is not None
    return _response_record(flow.response)


def replay_flow(flow: http.HTTPFlow, name: str = "") -> Outcome:
    """Run the recorded upstream response through the current addon with the recorded rule."""
    from .addon import StreamShim
    from .rules import Rule, RuleSet

    state = dict(flow.metadata.get(META) or {})
    outcome = Outcome(name or flow.request.pretty_url)
    if flow.response is None:
        outcome.diffs.append("the recording has no response to replay")
        return outcome
    shim = StreamShim()
    settings = state.get("settings")
    if state.get("rule") and isinstance(settings, dict):
        shim.rules = RuleSet((Rule(name=state["rule"], host="*", path=("*",), **settings),), "<recording>")
    f = flow.copy()
    f.metadata = {}
    f.comment = ""
    client_request = state.get("client_request")
    if client_request is not None:
        f.request.content = client_request
    upstream = _upstream_response(flow, state)
    f.response = None
    # the addon's hooks need no mitmproxy context: run them directly
    shim.request(f)
    if (f.request.raw_content or b"") != (flow.request.raw_content or b""):
        outcome.diffs.append(
            f"request sent upstream: recorded {_short(flow.request.get_text(strict=False))}, "
            f"now {_short(f.request.get_text(strict=False))}"
        )
    f.response = upstream
    shim.responseheaders(f)
    if callable(f.response.stream):
        out = b""
        body = upstream.raw_content or b""
        for piece in [body[i : i + 512] for i in range(0, len(body), 512)] + [b""]:
            got = f.response.stream(piece)
            out += got if isinstance(got, bytes) else b"".join(got)
        f.response.stream = False
        f.response.raw_content = out
    else:
        shim.response(f)
    now = _response_record(f.response)
    expected = expected_response(flow)
    outcome.now = now
    was = meaning(expected["status"], expected["headers"], expected["body"])
    got = meaning(now["status"], now["headers"], now["body"])
    if "error" in was and "error" in got:  # the wording of an error may change; its presence may not
        was["error"] = got["error"] = "(an error)"
    outcome.diffs += diff_meaning(was, got)
    return outcome


def _upstream_response(flow: http.HTTPFlow, state: dict[str, Any]) -> http.Response:
    assert flow.response is not None
    resp = flow.response.copy()
    if not state.get("fixture"):
        _restore_upstream(resp, state)
    return resp


def update_expectation(flow: http.HTTPFlow, outcome: Outcome) -> None:
    state = flow.metadata.setdefault(META, {})
    state["client_response"] = outcome.now


_SECRETISH = re.compile(rb"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+(?!\[scrubbed\])[A-Za-z0-9._\-]{8,})")


def find_secrets(data: bytes) -> list[bytes]:
    """Strings that look like API keys or bearer tokens (used by the tests on raw flow files)."""
    return _SECRETISH.findall(data)
