"""Fuzzing the core with hypothesis: arbitrary bytes, arbitrary byte splits and arbitrary chunk
JSON never raise anything but the core's typed errors. The default run keeps a fast sample (200
examples each); ``STREAMSHIM_FUZZ_EXAMPLES=100000 pytest tests/test_fuzz.py`` runs a campaign."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamshim import aggregate, synthesize
from streamshim.dialects.openai import encode_chunks as encode_data
from streamshim.errors import BadResponse, StreamError
from streamshim.framing.sse import SSEDecoder

FUZZ = int(os.environ.get("STREAMSHIM_FUZZ_EXAMPLES", "0"))
SAMPLE = settings(max_examples=FUZZ or 200, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["stop", "tool_calls", "function", "assistant", "[DONE]"]),
)
KEYS = [
    "id",
    "object",
    "created",
    "model",
    "choices",
    "index",
    "delta",
    "message",
    "content",
    "role",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "type",
    "finish_reason",
    "logprobs",
    "usage",
    "text",
    "refusal",
    "reasoning",
    "reasoning_content",
    "audio",
    "data",
    "transcript",
    "annotations",
    "error",
    "function_call",
    "reasoning_details",
    "tokens",
    "token_logprobs",
    "x",
]
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)
chunks = st.lists(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6), max_size=8)


def _aggregate_ok(body: bytes, api: Any) -> None:
    try:
        out = aggregate(body, api)
    except StreamError as exc:
        assert exc.message and exc.kind in ("upstream_error", "malformed", "truncated", "not_sse")
        return
    assert isinstance(out, dict) and isinstance(out["choices"], list)
    json.dumps(out)  # always serialisable


@SAMPLE
@given(items=chunks, done=st.booleans(), api=st.sampled_from(["chat", "completions"]))
def test_fuzz_aggregate_arbitrary_chunk_json(items: list[dict[str, Any]], done: bool, api: Any) -> None:
    _aggregate_ok(encode_data(items, done=done), api)


@SAMPLE
@given(body=st.binary(max_size=300), api=st.sampled_from(["chat", "completions"]))
def test_fuzz_aggregate_arbitrary_bytes(body: bytes, api: Any) -> None:
    _aggregate_ok(body, api)


@SAMPLE
@given(resp=json_values, usage=st.booleans(), api=st.sampled_from(["chat", "completions"]))
def test_fuzz_synthesize_arbitrary_json(resp: Any, usage: bool, api: Any) -> None:
    try:
        body = synthesize(resp, api, usage=usage)
    except BadResponse:
        return
    _aggregate_ok(body, api)


@SAMPLE
@given(body=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_fuzz_decoder_split_invariant_on_arbitrary_bytes(body: bytes, cuts: list[int]) -> None:
    def run(parts: list[bytes]) -> tuple[list[Any], list[str]]:
        dec = SSEDecoder()
        evs = [e for p in parts for e in dec.feed(p)] + dec.close()
        return [(e.data, e.event, e.id, e.retry, e.number, e.offset) for e in evs], dec.problems

    points = sorted({c % (len(body) + 1) for c in cuts})
    parts = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert run(parts) == run([body])


# -- the Responses API: arbitrary event payloads under its own event names ----------------------

RESPONSES_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.refusal.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
]
RESPONSES_KEYS = [
    "type",
    "response",
    "output",
    "item",
    "part",
    "id",
    "item_id",
    "output_index",
    "content_index",
    "summary_index",
    "sequence_number",
    "delta",
    "text",
    "arguments",
    "content",
    "summary",
    "status",
    "error",
    "message",
    "code",
]
responses_values = st.recursive(
    st.one_of(scalars, st.sampled_from(RESPONSES_TYPES), st.integers(-1, 3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(RESPONSES_KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)
responses_events = st.lists(
    st.tuples(
        st.sampled_from(RESPONSES_TYPES),
        st.dictionaries(st.sampled_from(RESPONSES_KEYS), responses_values, max_size=6),
        st.booleans(),
    ),
    max_size=10,
)


def _responses_body(events: list[tuple[str, dict[str, Any], bool]]) -> bytes:
    out = b""
    for name, payload, typed in events:
        if typed:
            payload = {**payload, "type": name}
        out += f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
    return out


@SAMPLE
@given(events=responses_events)
def test_fuzz_responses_aggregate_and_check_arbitrary_events(
    events: list[tuple[str, dict[str, Any], bool]],
) -> None:
    from streamshim.check import check_stream, codes

    body = _responses_body(events)
    try:
        out = aggregate(body, "responses")
    except StreamError as exc:
        assert exc.message and exc.kind in ("upstream_error", "malformed", "truncated", "not_sse")
        json.dumps(exc.partial)
    else:
        assert isinstance(out, dict) and "output" in out  # the terminal's, as it came, or the items
        json.dumps(out)
    known = codes("responses")
    assert all(f.severity == known[f.code][0] for f in check_stream(body, "responses").findings)


@SAMPLE
@given(resp=st.dictionaries(st.sampled_from(RESPONSES_KEYS), responses_values, max_size=6))
def test_fuzz_responses_synthesize_arbitrary_json(resp: dict[str, Any]) -> None:
    try:
        body = synthesize(resp, "responses")
    except BadResponse:
        return
    try:
        out = aggregate(body, "responses")
    except StreamError as exc:  # a body whose status is "failed" streams as response.failed
        assert exc.kind == "upstream_error"
        return
    assert out == resp


# -- Anthropic Messages: named events of arbitrary shape ----------------------------------------

ANTHROPIC_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "thinking_delta",
    "signature_delta",
    "input_json_delta",
    "citations_delta",
    "text",
    "thinking",
    "tool_use",
    "server_tool_use",
    "redacted_thinking",
    "message",
]
ANTHROPIC_KEYS = [
    "type",
    "message",
    "index",
    "content_block",
    "delta",
    "usage",
    "content",
    "text",
    "thinking",
    "signature",
    "partial_json",
    "citation",
    "citations",
    "input",
    "stop_reason",
    "stop_sequence",
    "output_tokens",
    "input_tokens",
    "error",
]
anthropic_values = st.recursive(
    st.one_of(scalars, st.sampled_from(ANTHROPIC_TYPES), st.integers(0, 3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(ANTHROPIC_KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)
anthropic_events = st.lists(
    st.tuples(
        st.sampled_from(ANTHROPIC_TYPES), st.dictionaries(st.sampled_from(ANTHROPIC_KEYS), anthropic_values)
    ),
    max_size=10,
)


@SAMPLE
@given(events=anthropic_events, cuts=st.lists(st.integers(0, 2000), max_size=4))
def test_fuzz_anthropic_arbitrary_events(events: list[tuple[str, dict[str, Any]]], cuts: list[int]) -> None:
    from streamshim import dialects
    from streamshim.check import check_stream

    payloads = [(name, {"type": name, **obj} if obj.get("type") is None else obj) for name, obj in events]
    body = b"".join(f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode() for name, obj in payloads)
    agg = dialects.get("anthropic").aggregator()
    points = sorted({c % (len(body) + 1) for c in cuts})
    for a, b in zip([0, *points], [*points, len(body)], strict=True):
        agg.feed(body[a:b])
    try:
        out = agg.finish()
    except StreamError as exc:
        assert exc.message and exc.kind in ("upstream_error", "malformed", "truncated", "not_sse")
    else:
        assert isinstance(out["content"], list) and out["stop_reason"] is not None
        json.dumps(out)
    check_stream(body, "anthropic")  # never raises


@SAMPLE
@given(resp=anthropic_values)
def test_fuzz_anthropic_synthesize_arbitrary_json(resp: Any) -> None:
    try:
        body = synthesize(resp, "anthropic")
    except BadResponse:
        return
    try:
        aggregate(body, "anthropic")
    except StreamError as exc:  # a body without a stop_reason streams as one: never a success
        assert exc.kind == "truncated" and not (isinstance(resp, dict) and resp.get("stop_reason"))
