"""Live repair of a stream for a stream client (rule key ``repair``): each event is rewritten only
where it breaks the contract and the right value is known from the stream itself; events that
need no repair leave as their original bytes, so a conformant stream passes byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest
from corpus import recorded, require_corpus
from helpers import chunk, delta, sse
from streamshim import aggregate, dialects
from streamshim.check import check_stream, request_expectations
from streamshim.dialects.base import Asked
from streamshim.meaning import compare, meaning
from streamshim.passthrough import EventFilter

openai = pytest.importorskip("openai")
from openai._models import construct_type  # noqa: E402
from openai.lib.streaming.chat import ChatCompletionStreamState  # noqa: E402
from openai.types.chat import ChatCompletionChunk  # noqa: E402

CHAT = dialects.get("chat")
STREAM = [("content-type", "text/event-stream")]
# what a repaired stream must not show any more (truncated becomes the error event it is)
REPAIRABLE = {
    "role-repeated",
    "tool-call-repeated-id",
    "tool-call-repeated-name",
    "tool-call-no-index",
    "no-terminator",
    "truncated",
    "finish-not-tool-calls",
}


def repaired(body: bytes, step: int = 7, n: int | None = None, clean: bool = True) -> tuple[bytes, dict]:
    """``body`` through the chat repairer, fed in ``step``-byte pieces as a live stream is."""
    rep = CHAT.repairer(Asked(stream=True, n=n), strip_usage=False, repair=True)
    assert rep is not None
    f = EventFilter(CHAT, rep)
    out = b"".join(f.feed(body[i : i + step]) for i in range(0, len(body), step)) + f.close(clean)
    return out, rep.counts


def sdk(body: bytes) -> Any:
    """What the openai SDK's own stream accumulator makes of a stream."""
    state = ChatCompletionStreamState()
    for ev in body.split(b"\n\n"):
        if ev.startswith(b"data: {"):
            state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=json.loads(ev[6:])))
    return state.current_completion_snapshot.choices[0]


def call(i: int | None = 0, **fields: Any) -> dict[str, Any]:
    fn = {k: fields.pop(k) for k in ("name", "arguments") if k in fields}
    out = {"index": i, **fields, "function": fn}
    return {k: v for k, v in out.items() if v is not None}


# llama-cpp-python's tool stream: role in every chunk, id/type/name in every delta
LLAMA = sse(
    chunk(
        delta(role="assistant", tool_calls=[call(id="c1", type="function", name="get_weather", arguments="")])
    ),
    chunk(
        delta(
            role="assistant",
            tool_calls=[call(id="c1", type="function", name="get_weather", arguments='{"ci')],
        )
    ),
    chunk(
        delta(
            role="assistant",
            tool_calls=[call(id="c1", type="function", name="get_weather", arguments='ty":1}')],
        )
    ),
    chunk(delta(finish_reason="tool_calls")),
)


def test_repeated_role_id_type_and_name_are_dropped_and_the_sdk_reads_it_right() -> None:
    before = sdk(LLAMA)
    assert before.message.tool_calls[0].function.name == "get_weatherget_weatherget_weather"
    out, counts = repaired(LLAMA)
    assert counts == {
        "role-repeated": 2,
        "tool-call-repeated-id": 2,
        "tool-call-repeated-type": 2,
        "tool-call-repeated-name": 2,
    }
    after = sdk(out)
    call0 = after.message.tool_calls[0]
    assert (after.message.role, call0.id, call0.function.name) == ("assistant", "c1", "get_weather")
    assert call0.function.arguments == '{"city":1}'
    # the meaning is unchanged, and the client's stream has nothing left to repair
    assert compare(meaning(200, STREAM, LLAMA), meaning(200, STREAM, out))[0] == []
    assert {f.code for f in check_stream(out).findings} & REPAIRABLE == set()
    assert {f.code for f in check_stream(LLAMA).findings} >= {"role-repeated", "tool-call-repeated-id"}


def test_a_conformant_stream_passes_byte_for_byte() -> None:
    body = sse(
        chunk(delta(role="assistant", content="")),
        chunk(delta(tool_calls=[call(id="c1", type="function", name="f", arguments="")])),
        chunk(delta(tool_calls=[call(arguments="{}")])),
        chunk(delta(finish_reason="tool_calls")),
    )
    for step in (1, 5, 64, len(body)):
        assert repaired(body, step) == (body, {})


def test_a_tool_call_without_index_gets_the_one_its_id_implies() -> None:
    body = sse(
        chunk(
            delta(role="assistant", tool_calls=[call(None, id="a", type="function", name="f", arguments="{")])
        ),
        chunk(delta(tool_calls=[call(None, arguments="}")])),
        chunk(delta(tool_calls=[call(None, id="b", type="function", name="g", arguments="{}")])),
        chunk(delta(tool_calls=[call(None, id="a", arguments="")])),
        chunk(delta(finish_reason="tool_calls")),
    )
    out, counts = repaired(body)
    assert counts == {"tool-call-no-index": 4, "tool-call-repeated-id": 1}
    indexes = [
        c["index"]
        for ev in out.split(b"\n\n")
        if ev.startswith(b"data: {")
        for ch in json.loads(ev[6:])["choices"]
        for c in ch["delta"].get("tool_calls", [])
    ]
    assert indexes == [0, 0, 1, 0]
    calls = sdk(out).message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", "{}"),
        ("b", "g", "{}"),
    ]


def test_a_clean_end_without_done_gets_done_and_a_cut_one_an_error_the_sdk_raises_on() -> None:
    finished = sse(
        chunk(delta(role="assistant", content="hi")), chunk(delta(finish_reason="stop")), done=False
    )
    out, counts = repaired(finished)
    assert out == finished + b"data: [DONE]\n\n" and counts == {"no-terminator": 1}

    cut = sse(chunk(delta(role="assistant", content="hi")), done=False)
    out, counts = repaired(cut)
    assert counts == {"truncated": 1}
    last = json.loads(out.split(b"\n\n")[-2][6:])
    assert (
        last["error"]["code"] == "truncated"
        and "choice(s) 0 without finish_reason" in last["error"]["message"]
    )
    # (the openai SDK's stream raises on it instead of ending quietly: test_e2e_faults.py)

    # of n=2 asked, one choice never came: cut too
    one = sse(chunk(delta(role="assistant", content="x", finish_reason="stop")), done=False)
    assert repaired(one, n=2)[1] == {"truncated": 1}
    # the connection broke (not a clean end): nothing can be appended
    assert repaired(cut, clean=False) == (cut, {})


def test_stop_with_tool_calls_becomes_tool_calls() -> None:
    body = sse(
        chunk(delta(role="assistant", tool_calls=[call(id="c", type="function", name="f", arguments="{}")])),
        chunk(delta(finish_reason="stop")),
    )
    out, counts = repaired(body)
    assert counts == {"finish-not-tool-calls": 1}
    assert sdk(out).finish_reason == "tool_calls"


def test_errors_and_done_pass_as_they_are() -> None:
    err = (
        sse(chunk(delta(role="assistant", content="a")), done=False)
        + b'data: {"error": {"message": "x"}}\n\n'
    )
    assert repaired(err) == (err, {})
    after = sse(chunk(delta(role="assistant", content="a", finish_reason="stop"))) + sse(
        chunk(delta(role="assistant"))
    )
    assert repaired(after)[0] == after  # after [DONE] nothing is touched


def test_every_recorded_chat_stream_repaired_means_the_same_and_has_nothing_left_to_repair() -> None:
    require_corpus()
    streams = [r for r in recorded("chat") if r.mode == "stream" and r.status == 200]
    assert len(streams) >= 150
    identical = changed = 0
    left: dict[str, list[str]] = {}
    for r in streams:
        usage, n = request_expectations(r.request) if r.request else (None, None)
        out, counts = repaired(r.body, step=97, n=n)
        if not counts:
            assert out == r.body, r.name
            identical += 1
        else:
            changed += 1
        diffs, _ = compare(meaning(200, STREAM, r.body, "chat"), meaning(200, STREAM, out, "chat"))
        assert diffs == [], (r.name, diffs)
        found = {f.code for f in check_stream(out, "chat", usage_asked=usage, n=n).findings} & REPAIRABLE
        if found:
            left[r.name] = sorted(found)
    assert left == {}
    before = [r for r in streams if not {f.code for f in check_stream(r.body, "chat").findings} & REPAIRABLE]
    assert identical >= len(before)  # every stream with nothing to repair came out byte-identical
    print(f"\ncorpus chat streams through the repairer: {identical} byte-identical, {changed} repaired")


# -- the other dialects ------------------------------------------------------------------------------


def through(name: str, body: bytes, step: int = 11, clean: bool = True) -> tuple[bytes, dict]:
    d = dialects.get(name)
    rep = d.repairer(Asked(stream=True), strip_usage=False, repair=True)
    assert rep is not None
    f = EventFilter(d, rep)
    out = b"".join(f.feed(body[i : i + step]) for i in range(0, len(body), step)) + f.close(clean)
    return out, rep.counts


@pytest.mark.parametrize("tools", [False, True])
def test_llama_servers_responses_stream_is_given_what_the_sdk_helper_needs(tools: bool) -> None:
    import responses_sdk
    from fault_upstream import responses_events, responses_json, responses_sse
    from test_responses import llama_server_shape

    answer = responses_json(tools=tools)
    body = responses_sse(llama_server_shape(responses_events(answer)))
    as_sent = responses_sdk.helper(body)
    if not tools or responses_sdk.MAJOR < 3:  # the SDK helper fails on it as sent: 2.x always, 3.x on text
        assert as_sent.error is not None
    out, counts = through("responses", body)
    lacked = {"sequence-missing", "output-index-missing", "created-no-output"}
    lacked |= set() if tools else {"content-index-missing"}  # the function call has no parts
    assert lacked <= set(counts), counts
    read = responses_sdk.helper(out)
    assert read.error is None, read.failed
    final = read.final.model_dump(mode="json", exclude_none=True)
    assert [i["type"] for i in final["output"]] == [i["type"] for i in answer["output"]]
    assert compare(meaning(200, STREAM, body, "responses"), meaning(200, STREAM, out, "responses"))[0] == []
    left = {f.code for f in check_stream(out, "responses").findings}
    assert not left & {
        "sequence-missing",
        "output-index-missing",
        "content-index-missing",
        "created-no-output",
    }


def test_a_responses_stream_cut_with_a_clean_end_gets_an_error_event() -> None:
    import responses_sdk
    from fault_upstream import responses_events, responses_json, responses_sse

    events = responses_events(responses_json())
    body = responses_sse(events[:-1])  # everything but the terminal event
    out, counts = through("responses", body)
    assert counts == {"no-terminal": 1}
    last = out.split(b"\n\n")[-2]
    assert last.startswith(b"event: error\n") and b'"code":"truncated"' in last
    assert responses_sdk.helper(out).error is not None  # the SDK raises, not a quiet end
    assert through("responses", body, clean=False) == (body, {})


def test_anthropic_streams_are_ended_right_or_with_an_error_the_sdk_raises() -> None:
    from anthropic_sdk import sdk_outcome
    from anthropic_streams import cut_before_stop, cut_in_tool_json, stream

    whole = stream("tool")
    assert through("anthropic", whole) == (whole, {})
    # message_delta with its stop_reason arrived, message_stop did not: the stream is complete
    cut = cut_before_stop("tool")
    out, counts = through("anthropic", cut)
    assert counts == {"no-message-stop": 1} and out.endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert sdk_outcome(out) == sdk_outcome(whole)
    # cut inside the tool's input JSON: the SDK would heal it to {}; it gets an error instead
    torn = cut_in_tool_json()
    assert isinstance(sdk_outcome(torn), dict)  # the SDK's own verdict: a "complete" message
    out, counts = through("anthropic", torn)
    assert counts == {"truncated": 1}
    assert str(sdk_outcome(out)).startswith("raises ")


def test_unnamed_anthropic_events_get_their_names() -> None:
    from anthropic_sdk import sdk_outcome
    from anthropic_streams import stream

    whole = stream("text")
    unnamed = b"\n".join(line for line in whole.split(b"\n") if not line.startswith(b"event: "))
    out, counts = through("anthropic", unnamed)
    assert counts["event-name-missing"] >= 5
    assert sdk_outcome(out) == sdk_outcome(whole)


@pytest.mark.parametrize("api", ["responses", "anthropic"])
def test_every_recorded_stream_of_the_other_dialects_passes_byte_for_byte(api: str) -> None:
    require_corpus()
    streams = [r for r in recorded(api) if r.mode == "stream" and r.status == 200]
    assert len(streams) >= 20
    for r in streams:
        out, counts = through(api, r.body, step=101)
        assert (out, counts) == (r.body, {}), r.name


def test_responses_repair_of_an_item_that_is_not_an_object_forwards_it() -> None:
    # an output_item.done without output_index whose item is not an object: the repairer cannot
    # place it by id, and forwards it (it raised AttributeError mid-stream before)
    body = (
        b'event: response.output_item.added\ndata: {"type":"response.output_item.added","output_index":0,'
        b'"item":{"id":"m1","type":"message"},"sequence_number":0}\n\n'
        b'event: response.output_item.done\ndata: {"type":"response.output_item.done","item":[1],'
        b'"sequence_number":1}\n\n'
    )
    out, counts = through("responses", body, clean=False)
    assert b'"item":[1]' in out and counts.get("output-index-missing") == 1


def test_responses_repair_of_an_event_whose_type_is_not_a_string_forwards_it() -> None:
    body = b'data: {"type":["response.created"],"sequence_number":0}\n\n'  # found by the mutation fuzz
    out, counts = through("responses", body, clean=False)
    assert out == body and counts == {}


def test_anthropic_repairer_and_aggregator_agree_on_a_tool_input_of_white_space() -> None:
    # one rule (dialects.anthropic.tool_input): white space spells {} for the aggregator, the
    # checker and the repairer alike; the repairer took it for a cut tool input before
    from anthropic_streams import event

    start = {"type": "message", "role": "assistant", "content": [], "stop_reason": None, "usage": {}}
    body = b"".join(
        [
            event("message_start", {"type": "message_start", "message": start}),
            event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                },
            ),
            event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "  "},
                },
            ),
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 1},
                },
            ),
        ]
    )
    out, counts = through("anthropic", body)
    assert counts == {"no-message-stop": 1}
    assert aggregate(out, "anthropic")["content"][0]["input"] == {}
