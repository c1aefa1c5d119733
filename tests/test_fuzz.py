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
