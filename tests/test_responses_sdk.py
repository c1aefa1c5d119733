"""What the openai SDK does with Responses streams: the severities of the ``responses`` check codes
are decided here, and the SDK reads every stream streamshim synthesizes.

Each crafted case breaks one rule of the event grammar in an otherwise valid stream (a message
and a function call, synthesized by streamshim), and records what the SDK's stream helper
(``client.responses.stream()`` + ``get_final_response()``, i.e. ``ResponseStreamState``) does with
it on each line: ``raises``, ``final-differs`` (its final response's text, items or arguments are
not the answer's), ``events-differ`` (its delta/done events disagree with its own final response)
or ``ok``. A code is an error when a client following the contract gets wrong or incomplete data
on either line (openai 2.x beside mitmproxy 11, 3.x beside mitmproxy 12), a warning when both cope.
The suite runs under both lines; each run checks the line it has.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from corpus import SKIP_REASON, ids, recorded, require_corpus
from responses_sdk import MAJOR, Read, create_stream, helper, helper_async
from streamshim import aggregate, dialects, synthesize
from streamshim.check import check_stream, codes
from streamshim.framing import Event, encode_json
from streamshim.framing.sse import SSEDecoder, encode_events

RESPONSES = dialects.get("responses")
ANSWER: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "m",
    "output": [
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello world"}],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
    ],
    "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
}

Events = list[tuple[str, dict[str, Any]]]


def events_of(body: bytes) -> Events:
    dec = SSEDecoder()
    return [(e.event, json.loads(e.data)) for e in dec.feed(body) + dec.close()]


def encode(events: Events) -> bytes:
    return encode_events(Event(data=encode_json(p), event=name) for name, p in events)


def at(events: Events, kind: str, n: int = 0) -> int:
    return [i for i, (_, p) in enumerate(events) if p.get("type") == kind][n]


def _each(key: str, change: Callable[[Any], Any]) -> Callable[[Events], None]:
    def run(events: Events) -> None:
        for _, p in events:
            if key in p:
                value = change(p[key])
                if value is _DROP:
                    del p[key]
                else:
                    p[key] = value

    return run


_DROP = object()


def _move_delta_before_added(e: Events) -> None:
    e.insert(at(e, "response.output_item.added"), e.pop(at(e, "response.output_text.delta")))


def _move_delta_after_done(e: Events) -> None:
    ev = e.pop(at(e, "response.output_text.delta", -1))
    e.insert(at(e, "response.output_item.done") + 1, ev)


def _rotate_item_id(e: Events) -> None:
    e[at(e, "response.output_item.done")][1]["item"]["id"] = "msg_2"
    e[-1][1]["response"]["output"][0]["id"] = "msg_2"


def _text_done(e: Events) -> None:
    e[at(e, "response.output_text.done")][1]["text"] = "Hello WORLD"


def _args_not_json(e: Events) -> None:
    for _, p in e:
        if "delta" in p and p["type"].startswith("response.function_call"):
            p["delta"] = p["delta"].replace('"Paris"', "Paris")
        if p["type"] == "response.function_call_arguments.done":
            p["arguments"] = '{"city": Paris}'
        if p["type"] == "response.output_item.done" and p["item"]["type"] == "function_call":
            p["item"]["arguments"] = '{"city": Paris}'
    e[-1][1]["response"]["output"][1]["arguments"] = '{"city": Paris}'


def _unfinished(e: Events) -> None:
    e.pop(at(e, "response.output_item.done"))
    e[-1][1]["response"]["output"].pop(0)


def _terminal(change: Callable[[dict[str, Any]], None]) -> Callable[[Events], None]:
    return lambda e: change(e[-1][1]["response"])


def _failed(e: Events) -> None:
    resp = e[-1][1]["response"]
    resp.update(status="failed", error={"code": "server_error", "message": "boom"})
    e[-1] = ("response.failed", {**e[-1][1], "type": "response.failed"})


def _error_event(payload: dict[str, Any]) -> Callable[[Events], Events]:
    return lambda e: [*e[:6], ("error", {"type": "error", **payload, "sequence_number": 6})]


def _set(kind: str, key: str, value: Any, n: int = 0) -> Callable[[Events], None]:
    def run(e: Events) -> None:
        e[at(e, kind, n)][1][key] = value

    return run


def _lifecycle_without_output(e: Events) -> None:
    for _, p in e[:2]:
        del p["response"]["output"]


def _drop_type(e: Events) -> None:
    del e[at(e, "response.output_text.delta")][1]["type"]


def _rename(e: Events) -> None:
    i = at(e, "response.output_text.delta")
    e[i] = ("response.refusal.delta", e[i][1])


# (mutation, the code it must produce, what the SDK's helper does: {line: verdict})
CASES: dict[str, tuple[Callable[[Events], Events | None], str, dict[int, str]]] = {
    "first event not created": (lambda e: e[1:], "first-not-created", {2: "raises", 3: "raises"}),
    "created without output": (_lifecycle_without_output, "created-no-output", {2: "raises", 3: "ok"}),
    "response id changed": (
        _terminal(lambda r: r.update(id="resp_2")),
        "response-id-changed",
        {2: "ok", 3: "raises"},
    ),
    "no sequence_number": (_each("sequence_number", lambda v: _DROP), "sequence-missing", {2: "ok", 3: "ok"}),
    "sequence_number repeated": (
        _each("sequence_number", lambda v: 0),
        "sequence-repeated",
        {2: "ok", 3: "ok"},
    ),
    "sequence_number decreasing": (
        _each("sequence_number", lambda v: 100 - v),
        "sequence-decreasing",
        {2: "ok", 3: "ok"},
    ),
    "no output_index": (
        _each("output_index", lambda v: _DROP),
        "output-index-missing",
        {2: "raises", 3: "raises"},
    ),
    "output_index from 1": (
        _each("output_index", lambda v: v + 1),
        "output-index-gap",
        {2: "raises", 3: "ok"},
    ),
    "no content_index": (
        _each("content_index", lambda v: _DROP),
        "content-index-missing",
        {2: "raises", 3: "raises"},
    ),
    "no item_id": (_each("item_id", lambda v: _DROP), "item-id-missing", {2: "ok", 3: "ok"}),
    "item_id of another item": (_each("item_id", lambda v: "other"), "item-id-mismatch", {2: "ok", 3: "ok"}),
    "item id rotated at done (Copilot)": (_rotate_item_id, "item-id-changed", {2: "ok", 3: "raises"}),
    "item added twice": (
        lambda e: [*e[:3], copy.deepcopy(e[2]), *e[3:]],
        "item-added-twice",
        {2: "raises", 3: "raises"},
    ),
    "delta before its item": (_move_delta_before_added, "event-before-added", {2: "raises", 3: "raises"}),
    "delta after its item's done": (_move_delta_after_done, "event-after-done", {2: "ok", 3: "ok"}),
    "output_text.done differs": (_text_done, "done-differs", {2: "events-differ", 3: "events-differ"}),
    "arguments not JSON": (_args_not_json, "arguments-not-json", {2: "final-differs", 3: "final-differs"}),
    "item never done": (_unfinished, "item-unfinished", {2: "final-differs", 3: "raises"}),
    "terminal output empty (Codex)": (
        _terminal(lambda r: r.update(output=[])),
        "terminal-output-differs",
        {2: "final-differs", 3: "final-differs"},
    ),
    "terminal text differs": (
        _terminal(lambda r: r["output"][0]["content"][0].update(text="Bye")),
        "terminal-output-differs",
        {2: "final-differs", 3: "final-differs"},
    ),
    "completed with status incomplete": (
        _terminal(lambda r: r.update(status="incomplete")),
        "status-mismatch",
        {2: "ok", 3: "ok"},
    ),
    "response.failed": (_failed, "response-failed", {2: "raises", 3: "raises"}),
    "error event, flat": (
        _error_event({"code": "server_error", "message": "boom", "param": None}),
        "upstream-error",
        {2: "raises", 3: "raises"},
    ),
    "error event, nested": (
        _error_event({"error": {"type": "server_error", "code": "server_error", "message": "boom"}}),
        "upstream-error",
        {2: "raises", 3: "raises"},
    ),
    "no terminal event": (lambda e: e[:-1], "no-terminal", {2: "raises", 3: "raises"}),
    "event after the terminal": (
        lambda e: [*e, ("response.output_text.delta", {**e[5][1], "sequence_number": 99})],
        "event-after-terminal",
        {2: "events-differ", 3: "events-differ"},
    ),
    "delta without type": (_drop_type, "type-missing", {2: "events-differ", 3: "events-differ"}),
    "event name is not the type": (_rename, "type-mismatch", {2: "ok", 3: "ok"}),
}


def crafted(mutation: Callable[[Events], Events | None]) -> bytes:
    events = events_of(synthesize(ANSWER, "responses", chunk_chars=5))
    changed = mutation(events)
    return encode(changed if changed is not None else events)


def content(resp: dict[str, Any]) -> dict[str, Any]:
    """What the cases compare: text, reasoning, calls (status and usage are not content)."""
    out = RESPONSES.meaning(resp).as_dict()["output"][0]
    out.pop("status")
    return dict(out)


def verdict(read: Read, answer: dict[str, Any]) -> str:
    if read.error is not None:
        return "raises"
    final = read.final.to_dict()
    if content(final) != content(answer):
        return "final-differs"
    deltas = "".join(e.delta for e in read.events if e.type == "response.output_text.delta")
    done = "".join(e.text for e in read.events if e.type == "response.output_text.done")
    if deltas != read.final.output_text or done != read.final.output_text:
        return "events-differ"
    return "ok"


def test_the_valid_stream_is_read_by_the_sdk_and_conforms() -> None:
    body = crafted(lambda e: None)
    assert verdict(helper(body), ANSWER) == "ok"
    assert check_stream(body, "responses").findings == []


@pytest.mark.parametrize("case", list(CASES))
def test_what_the_sdk_does_decides_the_severity(case: str) -> None:
    mutation, code, sdk = CASES[case]
    body = crafted(mutation)
    assert verdict(helper(body), ANSWER) == sdk[MAJOR], f"openai {MAJOR}.x"
    report = check_stream(body, "responses")
    found = {f.code: f.severity for f in report.findings}
    assert code in found, report.summary()
    severity = codes("responses")[code][0]
    assert found[code] == severity
    assert severity == ("warning" if set(sdk.values()) == {"ok"} else "error")


def test_every_responses_code_is_decided_by_a_case_or_the_framing() -> None:
    decided = {code for _, code, _ in CASES.values()}
    framing = {"not-sse", "unterminated-event", "empty-event", "malformed-json", "not-an-object"}
    assert set(codes("responses")) == decided | framing | {"sequence-gap"}


def test_sequence_gap_is_a_warning_the_sdk_ignores() -> None:
    body = crafted(_each("sequence_number", lambda v: v * 2))
    assert verdict(helper(body), ANSWER) == "ok"
    assert {f.code for f in check_stream(body, "responses").findings} == {"sequence-gap"}


def test_the_sdk_helper_refuses_an_incomplete_response_that_create_reads() -> None:
    """``get_final_response()`` wants ``response.completed``: a ``response.incomplete`` stream
    (streamshim's, as OpenAI's) raises there, while ``create(stream=True)`` hands it over."""
    answer = {**ANSWER, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    body = synthesize(answer, "responses")
    assert events_of(body)[-1][0] == "response.incomplete"
    assert isinstance(helper(body).error, RuntimeError)
    read = create_stream(body)
    assert read.error is None and read.final.status == "incomplete"
    assert read.final.incomplete_details.reason == "max_output_tokens"


# -- the SDK reads what streamshim synthesizes -----------------------------------------------


def assert_same_answer(final: Any, answer: dict[str, Any]) -> None:
    """The SDK's final response equals the answer in content, items, arguments and usage."""
    got = final.to_dict() if not isinstance(final, dict) else final
    assert content(got) == content(answer)
    assert [(o.get("type"), o.get("id")) for o in got["output"]] == [
        (o.get("type"), o.get("id")) for o in answer["output"]
    ]
    assert got.get("usage") == answer.get("usage")
    assert got["status"] == answer["status"]


JSON_BODIES = tuple(r for r in recorded("responses") if r.mode == "json")
STREAMS = tuple(r for r in recorded("responses") if r.mode == "stream")


@pytest.mark.skipif(not JSON_BODIES, reason=SKIP_REASON)
@pytest.mark.parametrize("rec", JSON_BODIES, ids=ids(JSON_BODIES))
def test_the_sdk_reads_every_synthesized_corpus_stream_to_the_same_response(rec: Any) -> None:
    require_corpus()
    answer = json.loads(rec.body)
    body = synthesize(answer, "responses")
    assert aggregate(body) == answer
    for read in (helper(body), helper_async(body)):
        assert read.error is None, read.failed
        assert_same_answer(read.final, answer)
    raw = create_stream(body)
    assert raw.error is None and raw.final.to_dict() == answer


@pytest.mark.skipif(not STREAMS, reason=SKIP_REASON)
@pytest.mark.parametrize("rec", STREAMS, ids=ids(STREAMS))
def test_the_sdk_and_streamshim_agree_on_every_real_stream(rec: Any) -> None:
    require_corpus()
    read = helper(rec.body)
    assert read.error is None, read.failed
    ours = aggregate(rec.body, "responses")
    assert_same_answer(read.final, ours)
    assert check_stream(rec.body, "responses").findings == []


@pytest.mark.skipif(not STREAMS, reason=SKIP_REASON)
def test_every_real_stream_aggregates_to_its_own_terminal_response() -> None:
    """The 39 streamed corpus interactions (OpenAI, Azure: text, tools, multi-tool, reasoning
    summaries, structured output, web search): the body is exactly the terminal event's response,
    with no field differing. (Facts of the corpus the body keeps as the terminal says them:
    ``service_tier`` differs between ``response.created`` and the terminal event, the terminal's
    wins; the non-stream bodies' ``billing`` is in no stream event, so no aggregated body has it.)"""
    require_corpus()
    for rec in STREAMS:
        events = events_of(rec.body)
        assert events[-1][0] in ("response.completed", "response.incomplete"), rec.name
        assert aggregate(rec.body) == events[-1][1]["response"], rec.name
        assert all("billing" not in p.get("response", {}) for _, p in events)
    assert len(STREAMS) == 39
    assert sum("billing" in json.loads(r.body) for r in JSON_BODIES) > 0
