"""Anthropic Messages (``/v1/messages``): aggregation, synthesis, the conformance check and its
severities (decided by running the anthropic SDK's own accumulator on each case), meaning, the
error envelope, the CLI, and the real recorded corpus."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anthropic_streams as A
import pytest
from anthropic_sdk import MAJOR, final_message, parsed_message, sdk_outcome, without_sdk_fields
from corpus import SKIP_REASON, Recorded, ids, recorded
from streamshim import aggregate, dialects, synthesize, view
from streamshim.check import check_stream, codes
from streamshim.errors import MalformedEvent, TruncatedStream, UpstreamErrorEvent
from streamshim.framing.sse import SSEDecoder
from streamshim.meaning import compare, meaning
from test_cli import run as cli

D = dialects.get("anthropic")


def ev(kind: str, **obj: Any) -> bytes:
    return A.event(kind, {"type": kind, **obj})


def start(**message: Any) -> bytes:
    base = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    return ev("message_start", message={**base, **message})


def block(index: int, **content_block: Any) -> bytes:
    return ev("content_block_start", index=index, content_block=content_block)


def delta(index: int, **d: Any) -> bytes:
    return ev("content_block_delta", index=index, delta=d)


def stop(index: int) -> bytes:
    return ev("content_block_stop", index=index)


def end(stop_reason: str | None = "end_turn", **usage: Any) -> bytes:
    return ev(
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": 5, **usage},
    ) + ev("message_stop")


TEXT_STREAM = (
    start() + block(0, type="text", text="") + delta(0, type="text_delta", text="Hi") + stop(0) + end()
)


# -- aggregation ------------------------------------------------------------------------------


def test_aggregates_every_block_kind_by_index() -> None:
    body = (
        start()
        + block(0, type="thinking", thinking="", signature="")
        + A.PING
        + delta(0, type="thinking_delta", thinking="Let me ")
        + delta(0, type="thinking_delta", thinking="think.")
        + delta(0, type="signature_delta", signature="sig==")
        + stop(0)
        + block(1, type="redacted_thinking", data="opaque")
        + stop(1)
        + block(2, citations=[], type="text", text="")
        + delta(2, type="citations_delta", citation={"type": "char_location", "cited_text": "x"})
        + delta(2, type="text_delta", text="Paris")
        + stop(2)
        + block(3, type="tool_use", id="toolu_1", name="get_weather", input={})
        + delta(3, type="input_json_delta", partial_json="")
        + delta(3, type="input_json_delta", partial_json='{"city": "Pa')
        + delta(3, type="input_json_delta", partial_json='ris"}')
        + stop(3)
        + block(4, type="tool_use", id="toolu_2", name="now", input={})
        + delta(4, type="input_json_delta", partial_json="")
        + stop(4)
        + end("tool_use")
    )
    out = aggregate(body, "anthropic")
    assert out["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque"},
        {"citations": [{"type": "char_location", "cited_text": "x"}], "type": "text", "text": "Paris"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},  # an empty buffer is {}
    ]
    assert out["stop_reason"] == "tool_use"
    assert "stop_details" not in out  # only what the wire had (the SDK adds stop_details: null)


def test_message_delta_usage_overrides_message_start() -> None:
    """Cumulative counts (web search: input_tokens 2049 → 13520 in the corpus); a field the
    message_delta leaves out keeps message_start's value."""
    usage = {
        "input_tokens": 2049,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
        "service_tier": "standard",
    }
    body = start(usage=usage) + end(input_tokens=13520, server_tool_use={"web_search_requests": 1})
    assert aggregate(body, "anthropic")["usage"] == {
        "input_tokens": 13520,
        "cache_read_input_tokens": 0,
        "output_tokens": 5,
        "service_tier": "standard",
        "server_tool_use": {"web_search_requests": 1},
    }


def test_stop_sequence_details_and_container_are_copied() -> None:
    body = start() + ev(
        "message_delta",
        delta={
            "stop_reason": "stop_sequence",
            "stop_sequence": "!",
            "stop_details": None,
            "container": {"id": "c"},
        },
        usage={"output_tokens": 2},
    )
    out = aggregate(body + ev("message_stop"), "anthropic")
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "!")
    assert out["stop_details"] is None and out["container"] == {"id": "c"}


def test_padded_json_and_pings() -> None:
    body = A.padded(A.stream("websearch"))
    assert b"       }" in body or b"  }" in body
    assert aggregate(body, "anthropic") == A.MESSAGES["websearch"]
    assert check_stream(body, "anthropic").findings == []


def test_llama_server_shapes() -> None:
    """llama.cpp's llama-server: a tool_use start without input, a thinking start without
    signature and an empty signature_delta (its non-stream body says signature "")."""
    body = (
        start(usage={"cache_read_input_tokens": 25, "input_tokens": 1, "output_tokens": 0})
        + block(0, type="thinking", thinking="")
        + delta(0, type="thinking_delta", thinking="J!")
        + delta(0, type="signature_delta", signature="")
        + stop(0)
        + block(1, type="tool_use", id="c1", name="get_weather")
        + delta(1, type="input_json_delta", partial_json="{")
        + delta(1, type="input_json_delta", partial_json='"city":"London"\n                    }')
        + stop(1)
        + end("tool_use")
    )
    out = aggregate(body, "anthropic")
    assert out["content"] == [
        {"type": "thinking", "thinking": "J!", "signature": ""},
        {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "London"}},
    ]
    assert out["usage"] == {"cache_read_input_tokens": 25, "input_tokens": 1, "output_tokens": 5}
    report = check_stream(body, "anthropic")
    assert [f.code for f in report.findings] == ["thinking-no-signature"] and report.ok


def test_events_without_names_aggregate_by_their_type() -> None:
    """The payload's type decides (the SDK would drop unnamed events: the checker says so)."""
    body = b"".join(b"data: " + e.split(b"data: ", 1)[1] for e in A.events(TEXT_STREAM))
    assert aggregate(body, "anthropic")["content"] == [{"type": "text", "text": "Hi"}]
    assert {f.code for f in check_stream(body, "anthropic").errors} == {"event-name-missing"}


@pytest.mark.parametrize(
    ("name", "body", "error", "words"),
    [
        ("no message_stop", A.cut_before_stop(), TruncatedStream, "without message_stop"),
        ("cut in tool JSON", A.cut_in_tool_json(), TruncatedStream, "cut inside a tool's input JSON"),
        ("no stop_reason", start() + end(None), TruncatedStream, "no stop_reason"),
        ("overloaded", A.overloaded(), UpstreamErrorEvent, "Overloaded (overloaded_error)"),
        ("spliced", A.spliced(), MalformedEvent, "second message_start"),
        ("spliced after stop", A.spliced_after_stop(), MalformedEvent, "after message_stop"),
        ("no message_start", TEXT_STREAM.split(b"\n\n", 1)[1], MalformedEvent, "before message_start"),
        (
            "tool JSON bad at stop",
            A.cut_in_tool_json() + stop(1) + end("tool_use"),
            MalformedEvent,
            "does not parse at content_block_stop",
        ),
        (
            "unknown index",
            start() + delta(3, type="text_delta", text="x") + end(),
            MalformedEvent,
            "never started",
        ),
        (
            "delta does not fit",
            start()
            + block(0, type="tool_use", id="t", name="n", input={})
            + delta(0, type="text_delta", text="x"),
            MalformedEvent,
            "does not fit",
        ),
        (
            "block started twice",
            start() + block(0, type="thinking", thinking="") + block(0, type="thinking", thinking=""),
            MalformedEvent,
            "started again",
        ),
        ("empty", b"", TruncatedStream, "empty"),
    ],
)
def test_a_broken_stream_is_never_a_success(name: str, body: bytes, error: type, words: str) -> None:
    with pytest.raises(error) as info:
        aggregate(body, "anthropic")
    assert words in info.value.message, info.value.message


def test_an_error_event_keeps_the_upstreams_error_and_what_arrived() -> None:
    with pytest.raises(UpstreamErrorEvent) as info:
        aggregate(A.overloaded(), "anthropic")
    assert info.value.upstream_error == {"type": "overloaded_error", "message": "Overloaded"}
    assert info.value.partial is not None and info.value.partial["content"][0]["type"] == "text"


def test_the_partial_answer_of_a_cut_tool_keeps_the_json_that_arrived() -> None:
    with pytest.raises(TruncatedStream) as info:
        aggregate(A.cut_in_tool_json(), "anthropic")
    partial = info.value.partial
    assert partial is not None
    tool = partial["content"][1]
    assert (
        tool["name"] == "get_weather" and isinstance(tool["input"], str) and tool["input"].startswith('{"ci')
    )


# -- synthesis ----------------------------------------------------------------------------------


def named(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    dec = SSEDecoder()
    return [(e.event, json.loads(e.data)) for e in dec.feed(body) + dec.close()]


def test_synthesized_stream_has_anthropics_shape() -> None:
    msg = A.MESSAGES["websearch"]
    events = named(synthesize(msg, "anthropic", chunk_chars=10))
    assert all(name == data["type"] for name, data in events)
    first = events[0][1]["message"]
    assert first["content"] == [] and first["stop_reason"] is None and first["stop_sequence"] is None
    assert (
        first["usage"]["output_tokens"] == 1
        and first["usage"]["input_tokens"] == msg["usage"]["input_tokens"]
    )
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts[0] == {**A.SERVER_TOOL, "input": {}}
    assert starts[1] == A.SEARCH_RESULT  # whole in its start
    assert starts[3] == {"type": "text", "text": "", "citations": []}
    deltas_of_3 = [d["delta"]["type"] for n, d in events if n == "content_block_delta" and d["index"] == 3]
    assert deltas_of_3[0] == "citations_delta" and set(deltas_of_3[1:]) == {"text_delta"}
    json_pieces = [
        d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 0
    ]
    assert json_pieces[0] == "" and json.loads("".join(json_pieces)) == A.SERVER_TOOL["input"]
    last = events[-2][1]
    assert last["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert last["usage"] == {
        "input_tokens": 42,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 7,
        "server_tool_use": {"web_search_requests": 1},
        "output_tokens": 19,
    }
    assert events[-1] == ("message_stop", {"type": "message_stop"})


def test_synthesized_thinking_sends_the_signature_once_after_the_text() -> None:
    events = named(synthesize(A.MESSAGES["thinking"], "anthropic"))
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    assert [d["type"] for d in deltas][-1] == "signature_delta"
    assert [d for d in deltas if d["type"] == "signature_delta"] == [
        {"type": "signature_delta", "signature": A.SIGNATURE}
    ]
    redacted = named(synthesize(A.MESSAGES["redacted"], "anthropic"))
    assert redacted[1][1]["content_block"] == A.REDACTED and redacted[2][0] == "content_block_stop"


@pytest.mark.parametrize("name", list(A.MESSAGES))
def test_round_trip_and_the_sdk_reads_the_same_message(name: str) -> None:
    msg = A.MESSAGES[name]
    body = synthesize(msg, "anthropic", chunk_chars=5)
    assert aggregate(body) == msg  # detected as anthropic from the stream
    assert without_sdk_fields(final_message(body), msg) == msg
    assert check_stream(body).findings == []


def test_bad_bodies_are_refused() -> None:
    from streamshim.errors import BadResponse

    for bad in ({"type": "message"}, {"content": [1]}, {"content": [{"text": "no type"}]}, []):
        with pytest.raises(BadResponse):
            synthesize(bad, "anthropic")


# -- conformance: each code, and what the anthropic SDK does with it -----------------------------

STOPPED_TEXT = start() + block(0, type="text", text="") + delta(0, type="text_delta", text="Hi") + stop(0)
TOOL_HEAD = start() + block(0, type="tool_use", id="t", name="get_weather", input={})
# code -> (stream, what the SDK's accumulator does with it: "raises …", or a check of its message)
CASES: dict[str, tuple[bytes, Any]] = {
    "not-sse": (b"hello", "raises"),
    "malformed-json": (start() + b"event: content_block_start\ndata: {nope\n\n" + end(), "raises"),
    "not-an-object": (start() + b"event: ping\ndata: [1]\n\n" + end(), None),
    "empty-event": (start() + b"event: ping\ndata:\n\n" + end(), None),
    "unterminated-event": (TEXT_STREAM.rstrip(b"\n"), None),
    "upstream-error": (A.overloaded(), "raises APIStatusError"),
    "event-name-missing": (
        b"".join(b"data: " + e.split(b"data: ", 1)[1] for e in A.events(TEXT_STREAM)),
        "raises AssertionError",  # every event dropped: no message at all
    ),
    "event-name-mismatch": (
        TEXT_STREAM.replace(b"event: content_block_delta", b"event: message_delta"),
        lambda m: m["content"][0]["text"] == "Hi",  # dispatched by the payload's type
    ),
    "first-not-message-start": (TEXT_STREAM.split(b"\n\n", 1)[1], "raises"),
    "message-start-repeated": (
        A.spliced(),
        lambda m: m["content"][0]["text"] == "Hello, world! ThLet me look.",
    ),
    "index-not-next": (
        start() + block(1, type="text", text="") + delta(1, type="text_delta", text="x") + stop(1) + end(),
        "raises IndexError",
    ),
    "block-restarted": (
        start() + block(0, type="text", text="") + stop(0) + block(0, type="text", text="") + stop(0) + end(),
        lambda m: len(m["content"]) == 2,  # two blocks where the server meant one
    ),
    "index-unknown": (start() + delta(2, type="text_delta", text="x") + end(), "raises IndexError"),
    "delta-after-stop": (
        STOPPED_TEXT + delta(0, type="text_delta", text="!") + end(),
        lambda m: m["content"][0]["text"] == "Hi!",
    ),
    "delta-wrong-block": (
        TOOL_HEAD + delta(0, type="text_delta", text="lost") + stop(0) + end("tool_use"),
        lambda m: "lost" not in json.dumps(m),  # silently dropped
    ),
    "delta-unknown": (STOPPED_TEXT + end(), None),  # (made below: a delta type of a newer API)
    "tool-input-bad-json": (
        TOOL_HEAD
        + delta(0, type="input_json_delta", partial_json='{"city": "Par')
        + stop(0)
        + end("tool_use"),
        # "healed" without a word: the cut value dropped (jiter's partial mode), the call looks whole
        lambda m: m["content"][0]["input"] in ({}, {"city": "Par"}),
    ),
    "thinking-no-signature": (
        start()
        + block(0, type="thinking", thinking="")
        + delta(0, type="thinking_delta", thinking="t")
        + stop(0)
        + end(),
        lambda m: m["content"][0].get("signature") in ("", None),
    ),
    "block-not-stopped": (
        start() + block(0, type="text", text="") + delta(0, type="text_delta", text="Hi") + end(),
        lambda m: m["content"][0]["text"] == "Hi",
    ),
    "no-stop-reason": (STOPPED_TEXT + end(None), lambda m: m["stop_reason"] is None),
    "no-message-stop": (
        A.cut_before_stop(),
        lambda m: m["stop_reason"] == "end_turn",
    ),  # a cut taken as whole
    "event-after-stop": (
        TEXT_STREAM + delta(0, type="text_delta", text=" again"),
        lambda m: m["content"][0]["text"] == "Hi again",
    ),
}
CASES["delta-unknown"] = (
    STOPPED_TEXT[: -len(stop(0))] + delta(0, type="fancy_delta", text="?") + stop(0) + end(),
    lambda m: m["content"][0]["text"] == "Hi",  # ignored
)


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_code_and_what_the_sdk_does(code: str) -> None:
    body, sdk = CASES[code]
    report = check_stream(body, "anthropic")
    found = {f.code for f in report.findings}
    assert code in found, [f.line() for f in report.findings]
    if sdk is None:
        return
    outcome = sdk_outcome(body)
    if isinstance(sdk, str):
        assert isinstance(outcome, str) and outcome.startswith(sdk), outcome
    else:
        assert isinstance(outcome, dict) and sdk(outcome), outcome


def test_every_code_has_a_case_and_the_severities_follow_the_sdk() -> None:
    assert set(CASES) == set(codes("anthropic"))
    severity = {code: sev for code, (sev, _) in codes("anthropic").items()}
    # the SDK survives these with the message the server meant: warnings
    assert {c for c, s in severity.items() if s == "warning"} == {
        "unterminated-event",
        "empty-event",
        "event-name-mismatch",
        "delta-after-stop",
        "delta-unknown",
        "thinking-no-signature",
        "block-not-stopped",
    }


def test_the_sdk_does_not_refuse_a_first_event_that_is_not_message_start_in_2x() -> None:
    """0.x raises RuntimeError; 2.x passes the events through and fails at get_final_message."""
    outcome = sdk_outcome(CASES["first-not-message-start"][0])
    assert outcome == ("raises RuntimeError" if MAJOR < 1 else "raises AssertionError")


# -- meaning, view, diff, errors ----------------------------------------------------------------


def test_meaning_compares_text_thinking_tools_stop_reason_usage_not_ids_or_signatures() -> None:
    msg = A.MESSAGES["thinking"]
    m = meaning(200, [], json.dumps(msg).encode())
    assert m["message"] == [
        {
            "thinking": A.THINKING["thinking"],
            "text": "",
            "tool_calls": [("get_weather", {"city": "Paris", "days": 2})],
            "stop_reason": "tool_use",
        }
    ]
    other = copy.deepcopy(msg)
    other["id"] = "msg_other"
    other["content"][0]["signature"] = "different"
    other["content"][1]["id"] = "toolu_other"
    streamed = meaning(200, [("content-type", "text/event-stream")], synthesize(other, "anthropic"))
    assert compare(m, streamed) == ([], [])
    other["content"][1]["input"]["city"] = "Rome"
    diffs, _ = compare(m, meaning(200, [], json.dumps(other).encode()))
    assert diffs == [
        'message[0].tool_calls[0]: A ["get_weather", {"city": "Paris", "days": 2}], '
        'B ["get_weather", {"city": "Rome", "days": 2}]'
    ]


def test_meaning_of_web_search_counts_citations_and_results() -> None:
    m = meaning(200, [], json.dumps(A.MESSAGES["websearch"]).encode())
    (out,) = m["message"]
    assert out["text"] == "According to the search, about 37 million people live in Greater Tokyo."
    assert out["citations"] == 1 and out["tool_results"] == ["web_search_tool_result: 1 item(s)"]
    assert out["tool_calls"] == [("web_search", {"query": "Tokyo population"})]
    redacted = meaning(200, [], json.dumps(A.MESSAGES["redacted"]).encode())
    assert redacted["message"][0]["redacted_thinking"] == "1 block(s)"


def test_view_renders_stream_json_and_broken_stream() -> None:
    text = view.render(A.stream("thinking"))
    assert text.splitlines()[0].startswith("LLM stream · anthropic · ")
    assert "stop_reason: tool_use" in text and "get_weather (id toolu_01, " not in text
    assert "reasoning:" in text and "get_weather" in text
    broken = view.render(A.cut_in_tool_json())
    assert "BROKEN (truncated)" in broken and "cut inside a tool's input JSON" in broken
    err = view.render(json.dumps(D.error_body("cut", "truncated", partial=A.MESSAGES["text"])).encode())
    assert "error (truncated): streamshim: cut" in err and "Hello, world!" in err


def test_error_envelope_and_status() -> None:
    body = D.error_body("upstream stream failed", "upstream_error", upstream_error=A.OVERLOADED["error"])
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error" and body["error"]["message"].startswith("streamshim: ")
    assert D.error_status(A.OVERLOADED["error"]) == 529
    assert D.error_status({"type": "rate_limit_error"}) == 429
    assert D.error_status(None) == 502 and D.error_status({"type": "api_error"}) == 502
    assert D.error_body("cut", "truncated")["error"]["type"] == "api_error"
    assert D.error_of(body) == ("upstream_error", body["error"]["message"], None)
    assert D.error_of(A.MESSAGES["text"]) is None


def test_the_sdk_reads_the_error_envelope() -> None:
    from anthropic_sdk import anthropic, client_for

    body = json.dumps(D.error_body("stream cut", "truncated")).encode()
    with pytest.raises(anthropic.InternalServerError) as info:
        client_for(body, 502, "application/json").messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert "streamshim: stream cut" in str(info.value)
    overloaded = json.dumps(
        D.error_body("overloaded", "upstream_error", upstream_error=A.OVERLOADED["error"])
    )
    with pytest.raises(anthropic.APIStatusError) as err:
        client_for(overloaded.encode(), 529, "application/json").messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert type(err.value).__name__ == "OverloadedError" and err.value.status_code == 529


def test_requests() -> None:
    body: dict[str, Any] = {"model": "m", "messages": []}
    assert D.asked(body).stream is False
    assert D.asked({**body, "stream": True}).stream is True
    assert D.asked({**body, "stream": "yes"}) is None
    D.ask_stream(body, D.asked(body))
    assert body["stream"] is True
    D.ask_json(body)
    assert body["stream"] is False
    assert dialects.for_path("/v1/messages") is D
    assert dialects.for_path("/anthropic/v1/messages?beta=true") is D
    assert dialects.for_path("/v1/messages/count_tokens") is None


def test_detection() -> None:
    assert dialects.detect(A.MESSAGES["text"]) is D
    assert dialects.detect_body(A.stream("tool")) is D
    assert dialects.detect_body(json.dumps(A.MESSAGES["tool"]).encode()) is D
    assert dialects.detect({"object": "chat.completion", "choices": []}) is not D


# -- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("api", [[], ["--api", "anthropic"]])
def test_cli_aggregate_synthesize_check(api: list[str], tmp_path: Path) -> None:
    body = tmp_path / "stream.sse"
    body.write_bytes(A.padded(A.stream("websearch")))
    out = cli("aggregate", str(body), *api)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == A.MESSAGES["websearch"]
    answer = tmp_path / "answer.json"
    answer.write_bytes(json.dumps(A.MESSAGES["thinking"]).encode())
    syn = cli("synthesize", str(answer), "--chunk-chars", "4", *api)
    assert syn.returncode == 0, syn.stderr
    assert (
        syn.stdout.startswith(b"event: message_start\n") and aggregate(syn.stdout) == A.MESSAGES["thinking"]
    )
    chk = cli("check", str(body), *api)
    assert chk.returncode == 0 and b"anthropic stream, 31 events: conforms" in chk.stdout, chk.stdout


def test_cli_on_broken_streams(tmp_path: Path) -> None:
    cut = tmp_path / "cut.sse"
    cut.write_bytes(A.cut_in_tool_json())
    out = cli("aggregate", str(cut))
    assert out.returncode == 1
    assert b"truncated at byte" in out.stderr and b"cut inside a tool's input JSON" in out.stderr
    chk = cli("check", str(cut), "--api", "anthropic")
    assert chk.returncode == 1 and b"no-message-stop" in chk.stdout and b"block-not-stopped" in chk.stdout
    spliced = cli("check", "-", stdin=A.spliced())
    assert spliced.returncode == 1 and b"message-start-repeated" in spliced.stdout
    over = cli("aggregate", "-", stdin=A.overloaded())
    assert (
        over.returncode == 1
        and b"upstream_error at event 5" in over.stderr
        and b"overloaded_error" in over.stderr
    )


def test_cli_diff_of_a_stream_and_its_body(tmp_path: Path) -> None:
    (tmp_path / "a.sse").write_bytes(A.stream("tool"))
    (tmp_path / "b.json").write_bytes(json.dumps(A.MESSAGES["tool"]).encode())
    out = cli("diff", str(tmp_path / "a.sse"), str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stdout
    assert out.stdout.startswith(b"same") and b"stop_reason 'tool_use'" in out.stdout


# -- the real corpus ----------------------------------------------------------------------------

STREAMS = tuple(r for r in recorded("anthropic") if r.mode == "stream")
BODIES = tuple(r for r in recorded("anthropic") if r.mode == "json")
corpus = pytest.mark.skipif(not STREAMS, reason=SKIP_REASON)


def pair_of(rec: Recorded) -> Recorded | None:
    """The non-stream interaction recorded for the same prompt (a separate generation)."""
    name, _, n = rec.name.partition("#")
    for a, b in (
        ("_streaming.yaml", ".yaml"),
        ("-streaming.yaml", ".yaml"),
        ("Streaming/anthropic-claude-sonnet-4-stream", "/anthropic-claude-sonnet-4"),
        ("/stream.yaml", "/generate.yaml"),
    ):
        if a in name:
            want = f"{name.replace(a, b)}#{n}"
            return next((r for r in BODIES if r.name == want), None)
    return None


def blocks_by_type(msg: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for b in msg["content"]:
        out.setdefault(b["type"], set()).update(b)
    return out


def carried(body: bytes) -> dict[int, dict[str, Any]]:
    """What the stream's deltas carried per block index, folded here independently of the
    aggregator: the text, thinking, signature, the tool input JSON, the citations."""
    out: dict[int, dict[str, Any]] = {}
    for name, data in named(body):
        if name != "content_block_delta":
            continue
        d, got = data["delta"], out.setdefault(data["index"], {})
        kind = d["type"]
        if kind in ("text_delta", "thinking_delta"):
            key = kind.removesuffix("_delta")
            got[key] = got.get(key, "") + d[key]
        elif kind == "input_json_delta":
            got["json"] = got.get("json", "") + d["partial_json"]
        elif kind == "signature_delta":
            got["signature"] = d["signature"]
        elif kind == "citations_delta":
            got.setdefault("citations", []).append(d["citation"])
    return out


@corpus
@pytest.mark.parametrize("rec", BODIES, ids=ids(BODIES))
def test_every_recorded_body_round_trips_and_the_sdk_reads_it_back(rec: Recorded) -> None:
    msg = json.loads(rec.body)
    body = synthesize(msg, "anthropic")
    assert aggregate(body) == msg
    assert check_stream(body).findings == []
    assert without_sdk_fields(final_message(body), msg) == msg
    assert without_sdk_fields(parsed_message(rec.body), msg) == msg  # the SDK's own view of the body


@corpus
@pytest.mark.parametrize("rec", STREAMS, ids=ids(STREAMS))
def test_every_recorded_stream_aggregates_to_a_body_of_the_same_shape(rec: Recorded) -> None:
    out = aggregate(rec.body)
    assert check_stream(rec.body).findings == []
    # the content the stream carried
    for index, got in carried(rec.body).items():
        b = out["content"][index]
        for key in ("text", "thinking", "signature", "citations"):
            if key in got:
                assert b[key] == got[key]
        if "json" in got:
            assert b["input"] == (json.loads(got["json"]) if got["json"] else {})
    # what the SDK's accumulator makes of it, less the fields it adds
    assert without_sdk_fields(final_message(rec.body), out) == out
    pair = pair_of(rec)
    if pair is None:
        assert rec.name == "TestAnthropicWebSearch/stream.yaml#1"  # its prompt has no non-stream twin
        return
    body = json.loads(pair.body)
    assert out.keys() == body.keys()
    assert out["usage"].keys() == body["usage"].keys()
    common = blocks_by_type(out).keys() & blocks_by_type(body).keys()
    assert common, (blocks_by_type(out), blocks_by_type(body))
    for kind in common:
        ours, theirs = blocks_by_type(out)[kind], blocks_by_type(body)[kind]
        assert ours == theirs, kind


@corpus
def test_corpus_counts() -> None:
    """The numbers the README states."""
    assert (len(STREAMS), len(BODIES)) == (23, 22)
    assert sum(pair_of(r) is not None for r in STREAMS) == 22


# -- found by the mutation fuzz (tests/test_fuzz_mutation.py) -----------------------------------------


def test_a_type_that_is_no_string_is_no_anthropic_event() -> None:
    """``detect`` looked ``type`` up in a set: ``"type": []`` raised TypeError out of every
    detection (aggregate, check, the view), and the checker's delta type did the same."""
    assert dialects.detect({"type": [], "message": {}}) is None and D.detect({"type": {}}) == 0
    body = TOOL_HEAD + delta(0, type=["input_json_delta"], partial_json="{}") + stop(0) + end("tool_use")
    codes = [f.code for f in check_stream(body, "anthropic").findings]
    assert "delta-unknown" in codes


def test_input_spoiled_after_its_block_stopped_is_malformed() -> None:
    """A delta after ``content_block_stop`` is accepted (a problem), but it may spoil the input
    JSON that parsed at the stop: ``finish`` raised the parser's ValueError building the answer."""
    body = TOOL_HEAD + delta(0, type="input_json_delta", partial_json='{"a": 1}') + stop(0)
    body += delta(0, type="input_json_delta", partial_json="}") + end("tool_use")
    with pytest.raises(MalformedEvent, match=r"content block 0 .*does not parse at the end"):
        aggregate(body, "anthropic")
