"""The conformance check: every finding code on a stream built to show it, the real recorded
streams, streamshim's own synthesized streams, and the ``check``/``diff`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corpus import recorded, require_corpus
from helpers import chunk, completion, delta, sse
from streamshim import synthesize
from streamshim.check import check_stream, codes, request_expectations
from test_cli import run

CODES = codes("chat")

RECORDINGS = Path(__file__).resolve().parents[1] / "recordings"
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def call(i: int = 0, id: str | None = "call_1", name: str | None = "f", args: str = "", **extra: Any) -> dict:
    fn = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    out = {"index": i, "id": id, "type": "function", "function": fn, **extra}
    return {k: v for k, v in out.items() if v is not None}


GOOD = sse(
    chunk(delta(role="assistant", content="")),
    chunk(delta(content="Hel")),
    chunk(delta(content="lo")),
    chunk(delta(finish_reason="stop")),
    chunk(usage=USAGE),
)
TOOLS = [
    chunk(delta(role="assistant", tool_calls=[call(args='{"ci')])),
    chunk(delta(tool_calls=[call(id=None, name=None, args='ty": "Paris"}')])),
    chunk(delta(finish_reason="tool_calls")),
]


def raw(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


def enc(obj: Any) -> str:
    return json.dumps(obj)


# name -> (body, check kwargs, {code: [event numbers]})
CASES: dict[str, tuple[bytes, dict[str, Any], dict[str, list[int | None]]]] = {
    "no data events": (b": keepalive\n\n", {}, {"not-sse": [None]}),
    "last event without blank line": (GOOD[: -len("\n\n")], {}, {"unterminated-event": [6]}),
    "empty data": (
        raw(enc(chunk(delta(role="assistant", finish_reason="stop"))), "", "[DONE]"),
        {},
        {"empty-event": [2]},
    ),
    "malformed JSON": (
        raw(
            enc(chunk(delta(role="assistant"))),
            '{"id": "c1", "choi',
            enc(chunk(delta(finish_reason="stop"))),
            "[DONE]",
        ),
        {},
        {"malformed-json": [2]},
    ),
    "JSON array": (
        raw("[1, 2]", enc(chunk(delta(role="assistant", finish_reason="stop"))), "[DONE]"),
        {},
        {"not-an-object": [1]},
    ),
    "error payload": (
        raw(enc(chunk(delta(role="assistant"))), enc({"error": {"message": "overloaded"}})),
        {},
        {
            "upstream-error": [2],
            "no-finish-reason": [None],
        },
    ),
    "error event": (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\n'
        b'event: error\ndata: {"message": "boom"}\n\n',
        {},
        {"upstream-error": [2]},
    ),
    "finished, no [DONE]": (
        sse(chunk(delta(role="assistant", content="x", finish_reason="stop")), done=False),
        {},
        {"no-terminator": [None]},
    ),
    "cut mid-answer": (
        sse(chunk(delta(role="assistant", content="x")), done=False),
        {},
        {
            "truncated": [None],
            "no-finish-reason": [None],
        },
    ),
    "two [DONE]": (GOOD + b"data: [DONE]\n\n", {}, {"duplicate-done": [7]}),
    "data after [DONE]": (GOOD + raw(enc(chunk(delta(content="late")))), {}, {"data-after-done": [7]}),
    "object, id, model, created": (
        sse(
            chunk(delta(role="assistant", content="a")),
            chunk(delta(content="b"), object="chat.completion", id="c2", model="m2", created=2),
            chunk(delta(finish_reason="stop"), id=""),
        ),
        {},
        {
            "object-wrong": [2],
            "id-changed": [2],
            "model-changed": [2],
            "created-changed": [2],
            "id-missing": [3],
        },
    ),
    "choices missing": (
        sse(
            chunk(delta(role="assistant", finish_reason="stop")),
            {"id": "c1", "object": "chat.completion.chunk"},
        ),
        {},
        {"choices-missing": [2]},
    ),
    "n=2, one choice": (GOOD, {"n": 2}, {"choice-missing": [None]}),
    "role": (
        sse(chunk(delta(content="a")), chunk(delta(role="assistant", content="b", finish_reason="stop"))),
        {},
        {"role-not-first": [1], "role-repeated": []},
    ),
    "role twice": (
        sse(
            chunk(delta(role="assistant", content="a")), chunk(delta(role="assistant", finish_reason="stop"))
        ),
        {},
        {"role-repeated": [2]},
    ),
    "content after finish": (
        sse(
            chunk(delta(role="assistant", finish_reason="stop")),
            chunk(delta(content="more", finish_reason="stop")),
        ),
        {},
        {"content-after-finish": [2], "finish-repeated": [2]},
    ),
    "n=2, choice 1 unfinished": (
        sse(chunk(delta(0, role="assistant", finish_reason="stop"), delta(1, role="assistant", content="x"))),
        {"n": 2},
        {"no-finish-reason": [None]},
    ),
    "tool call without index": (
        sse(
            chunk(
                delta(
                    role="assistant", tool_calls=[{"id": "a", "function": {"name": "f", "arguments": "{}"}}]
                )
            ),
            chunk(delta(finish_reason="tool_calls")),
        ),
        {},
        {"tool-call-no-index": [1]},
    ),
    "tool-call index gap, no id, no name": (
        sse(
            chunk(delta(role="assistant", tool_calls=[call(args="{}")])),
            chunk(delta(tool_calls=[call(2, id=None, name=None, args="{}")], finish_reason="tool_calls")),
        ),
        {},
        {"tool-call-index-gap": [2], "tool-call-no-id": [2], "tool-call-no-name": [2]},
    ),
    "tool-call id changed": (
        sse(TOOLS[0], chunk(delta(tool_calls=[call(id="call_2", name=None, args='ty": 1}')])), TOOLS[2]),
        {},
        {"tool-call-id-changed": [2]},
    ),
    "llama-cpp-python's repeated id and name": (
        sse(TOOLS[0], chunk(delta(tool_calls=[call(args='ty": 1}')])), TOOLS[2]),
        {},
        {"tool-call-repeated-id": [2], "tool-call-repeated-name": [2]},
    ),
    "arguments not JSON": (
        sse(TOOLS[0], chunk(delta(tool_calls=[call(id=None, name=None, args="ty")])), TOOLS[2]),
        {},
        {"tool-call-bad-arguments": [1]},
    ),
    "arguments cut by length": (
        sse(TOOLS[0], chunk(delta(finish_reason="length"))),
        {},
        {"tool-call-cut-arguments": [1]},
    ),
    "tool calls, finish stop": (
        sse(*TOOLS[:2], chunk(delta(finish_reason="stop"))),
        {},
        {"finish-not-tool-calls": [3]},
    ),
    "choice index not an integer": (
        raw(enc(chunk({"index": "0", "delta": {"role": "assistant"}, "finish_reason": "stop"})), "[DONE]"),
        {},
        {"choice-bad-index": [1]},
    ),
    "finish tool_calls, no call": (
        sse(chunk(delta(role="assistant", content="x")), chunk(delta(finish_reason="tool_calls"))),
        {},
        {"finish-tool-calls-without-calls": [2]},
    ),
    "usage asked, none": (sse(*TOOLS), {"usage_asked": True}, {"usage-missing": [None]}),
    "usage unasked": (GOOD, {"usage_asked": False}, {"usage-unasked": [None]}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_finding(name: str) -> None:
    body, kwargs, want = CASES[name]
    report = check_stream(body, **kwargs)
    got: dict[str, list[int | None]] = {}
    for f in report.findings:
        got.setdefault(f.code, []).append(f.event)
    assert got == {code: events for code, events in want.items() if events}
    assert report.ok == (not any(CODES[c][0] == "error" for c in got))


def test_every_code_is_shown_by_a_case() -> None:
    shown = {code for _, _, want in CASES.values() for code in want}
    assert shown == set(CODES)


def test_a_conforming_stream() -> None:
    report = check_stream(GOOD, usage_asked=True, n=1)
    assert (report.api, report.events, report.findings) == ("chat", 6, [])
    assert report.summary() == "6 events: conforms"
    tools = check_stream(sse(*TOOLS), usage_asked=False)
    assert tools.findings == []


def test_legacy_completions() -> None:
    def c(text: str, finish: str | None = None, **top: Any) -> dict[str, Any]:
        base = {"id": "t", "object": "text_completion", "created": 1, "model": "m"}
        return {**base, "choices": [{"index": 0, "text": text, "finish_reason": finish}], **top}

    assert check_stream(sse(c("a"), c("b", "stop"))).findings == []
    report = check_stream(sse(c("a", "length"), c("b"), c("", object="chat.completion.chunk")))
    assert [(f.code, f.event) for f in report.findings] == [("content-after-finish", 2), ("object-wrong", 3)]
    assert report.api == "completions"


def test_summary_counts_codes() -> None:
    body = sse(TOOLS[0], *[chunk(delta(tool_calls=[call(args=" ")]))] * 3, TOOLS[2])
    assert check_stream(body, usage_asked=True).summary() == (
        "6 events: 8 errors, 0 warnings "
        "(tool-call-repeated-id ×3, tool-call-repeated-name ×3, tool-call-bad-arguments, usage-missing)"
    )


def test_request_expectations() -> None:
    assert request_expectations(b'{"stream": true, "stream_options": {"include_usage": true}, "n": 2}') == (
        True,
        2,
    )
    assert request_expectations(b'{"stream": true}') == (False, None)
    assert request_expectations(b"not json") == (None, None)
    assert request_expectations(b"[1]") == (None, None)


def test_real_recorded_streams_have_no_error_findings_but_repeated_roles() -> None:
    """The only error real providers' streams carry is a role repeated in every chunk (OpenRouter
    and some OpenAI-compatible servers): the openai SDK's stream helper then returns the role
    ``assistantassistant…`` (see test_role_repeated_is_an_error_because_the_sdk_concatenates)."""
    require_corpus()
    streams = [r for r in recorded("chat") if r.mode == "stream" and r.status == 200]
    assert len(streams) >= 100
    errors: dict[str, set[str]] = {}
    clean = 0
    for r in streams:
        usage, n = request_expectations(r.request) if r.request else (None, None)
        report = check_stream(r.body, "chat", usage_asked=usage, n=n)
        clean += not report.findings
        if report.errors:
            errors[r.name] = {f.code for f in report.errors}
    assert set().union(*errors.values()) == {"role-repeated"}
    providers = {name.split("/")[0] for name in errors}
    assert providers <= {
        "TestOpenRouterCommon",
        "TestOpenRouterCommonWithAnthropicCache",
        "TestOpenRouterThinking",
        "TestOpenAICompatibleCommon",
        "TestOpenAICompatibleThinking",
        "TestOpenAICompatObjectGeneration",
    }
    assert len(errors) == 53
    assert clean >= len(streams) // 2  # the rest carry warnings (changing ids, created, ...)


def test_role_repeated_is_an_error_because_the_sdk_concatenates() -> None:
    """The severity follows what the openai SDK's own accumulator does with a repeated role or
    tool-call id/name: it concatenates them."""
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    body = sse(TOOLS[0], chunk(delta(role="assistant", tool_calls=[call(args='ty": 1}')])), TOOLS[2])
    state = ChatCompletionStreamState()
    for ev in body.split(b"\n\n"):
        if ev.startswith(b"data: {"):
            state.handle_chunk(ChatCompletionChunk.model_validate_json(ev[6:]))
    message = state.current_completion_snapshot.choices[0].message
    assert message.role == "assistantassistant"
    assert message.tool_calls is not None
    assert (message.tool_calls[0].function.name, message.tool_calls[0].id) == ("ff", "call_1call_1")
    codes = {f.code: f.severity for f in check_stream(body).findings}
    assert codes == {
        "role-repeated": "error",
        "tool-call-repeated-id": "error",
        "tool-call-repeated-name": "error",
    }


def test_streamshims_own_synthesized_streams_conform() -> None:
    require_corpus()
    bodies = [json.loads(r.body) for r in recorded("chat") if r.mode == "json" and r.status == 200]
    assert len(bodies) >= 100
    bad = {}
    for i, body in enumerate(bodies):
        for usage in (False, True):
            report = check_stream(
                synthesize(body, usage=usage), usage_asked=usage if body.get("usage") else None
            )
            if report.findings:
                bad[(i, usage)] = [f.line() for f in report.findings]
    assert bad == {}


# -- the commands ----------------------------------------------------------------------------------


def test_check_command_on_a_body(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.sse", tmp_path / "bad.sse"
    good.write_bytes(GOOD)
    bad.write_bytes(CASES["cut mid-answer"][0])
    ok = run("check", str(good))
    assert (ok.returncode, ok.stdout.decode()) == (0, f"{good}: chat stream, 6 events: conforms\n")
    out = run("check", str(good), str(bad))
    assert out.returncode == 1
    lines = out.stdout.decode().splitlines()
    assert lines[1] == f"{bad}: chat stream, 1 events: 2 errors, 0 warnings (truncated, no-finish-reason)"
    assert lines[2].split() == ["event", "severity", "code", "message"]
    assert lines[3].split()[:3] == ["-", "error", "truncated"]
    missing = run("check", str(tmp_path / "nope.sse"))
    assert missing.returncode == 2
    assert b"nope.sse: cannot read" in missing.stderr


def test_check_command_on_flow_files() -> None:
    tool = RECORDINGS / "llama-tool__stream-client__as-requested.flow"
    out = run("check", str(tool))
    text = out.stdout.decode()
    assert out.returncode == 1, text  # repeated id and name: the openai SDK concatenates them
    assert f"{tool}#0 upstream: chat stream, 20 events: 32 errors, 0 warnings" in text
    assert "tool-call-repeated-id ×16, tool-call-repeated-name ×16" in text
    assert text.count("repeats id") == 3 and "… 13 more (--all shows them)" in text
    assert run("check", "--all", str(tool)).stdout.decode().count("repeats id") == 16
    # the upstream was asked for usage (streamshim injects include_usage) and sent none
    forced = run("check", str(RECORDINGS / "llama-text__json-client__upstream-stream.flow"))
    assert forced.returncode == 1
    assert "usage-missing" in forced.stdout.decode()
    # synthesized for the client from JSON: the client side is checked, and conforms
    synth = run("check", str(RECORDINGS / "llama-tool__stream-client__upstream-json.flow"))
    assert (synth.returncode, synth.stdout.decode().split(": ", 1)[0]) == (
        0,
        f"{RECORDINGS / 'llama-tool__stream-client__upstream-json.flow'}#0 client",
    )
    cut = run("check", str(RECORDINGS / "fault-disconnect__stream-client__as-requested.flow"))
    assert cut.returncode == 1 and "truncated" in cut.stdout.decode()


def test_check_command_with_no_stream(tmp_path: Path) -> None:
    body = tmp_path / "c.json"
    body.write_text(json.dumps(completion({"index": 0, "message": {"role": "assistant", "content": "x"}})))
    out = run("check", str(body))
    assert out.returncode == 2
    assert out.stderr.decode() == f"streamshim: {body}: neither an SSE stream nor a flow file: it is JSON\n"
    json_only = RECORDINGS / "llama-text__json-client__upstream-json.flow"
    out = run("check", str(json_only))
    assert out.returncode == 2
    assert out.stderr.decode() == f"streamshim: {json_only}: no SSE stream to check in its 2 response(s)\n"


def test_diff_command() -> None:
    r = RECORDINGS
    same = run(
        "diff",
        str(r / "llama-tool__stream-client__as-requested.flow"),
        str(r / "llama-tool__json-client__as-requested.flow"),
    )
    lines = same.stdout.decode().splitlines()
    assert same.returncode == 0, lines
    assert lines[0].startswith("same  A=") and lines[0].endswith("(sse vs json)")
    assert lines[1:] == [
        "      note: usage only in B: not compared",
        "      status 200, 1 choice(s), finish_reason 'tool_calls', 0 chars, 1 tool call(s)",
    ]
    differ = run(
        "diff",
        str(r / "llama-text__stream-client__as-requested.flow"),
        str(r / "llama-length__json-client__as-requested.flow"),
    )
    assert differ.returncode == 1
    assert differ.stdout.decode().splitlines()[1:3] == [
        "      choices[0].content: A 'J!~$IT', B 'J!'",
        "      choices[0].finish_reason: A 'stop', B 'length'",
    ]


def test_diff_command_on_bodies(tmp_path: Path) -> None:
    a, b = tmp_path / "a.sse", tmp_path / "b.json"
    a.write_bytes(sse(*TOOLS))
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "other", "type": "function", "function": {"name": "f", "arguments": '{"city":"Paris"}'}}
        ],
    }
    b.write_text(json.dumps(completion({"index": 0, "message": msg, "finish_reason": "tool_calls"})))
    out = run("diff", str(a), str(b))
    assert out.returncode == 0, out.stdout  # ids differ, arguments parse to the same object
    msg["tool_calls"][0]["function"]["arguments"] = '{"city": "Lyon"}'
    b.write_text(json.dumps(completion({"index": 0, "message": msg, "finish_reason": "tool_calls"})))
    out = run("diff", str(a), str(b))
    assert out.returncode == 1
    assert (
        'choices[0].tool_calls[0]: A ["f", {"city": "Paris"}], B ["f", {"city": "Lyon"}]'
        in out.stdout.decode()
    )
    flows = RECORDINGS / "llama-tool__stream-client__as-requested.flow"
    twice = tmp_path / "two.flow"
    twice.write_bytes(flows.read_bytes() * 2)
    mismatch = run("diff", str(a), str(twice))
    assert mismatch.returncode == 2
    assert mismatch.stderr.decode() == (
        f"streamshim: {a}: holds 1 response(s), {twice} holds 2: flows are compared in pairs, in order\n"
    )


def test_check_command_reads_a_flow_file_from_stdin() -> None:
    flows = (RECORDINGS / "fault-disconnect__stream-client__as-requested.flow").read_bytes()
    out = run("check", "-", stdin=flows)
    assert out.returncode == 1
    assert out.stdout.decode().splitlines()[0] == (
        "<stdin>#0 upstream: chat stream, 3 events: 2 errors, 0 warnings (truncated, no-finish-reason)"
    )
