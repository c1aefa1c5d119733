"""Chat completions: one chat.completion → SSE chunks, and the exact round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import completion
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from responses import chat_completions
from streamshim import aggregate, synthesize
from streamshim.errors import BadResponse
from streamshim.framing.sse import SSEDecoder

RESP: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-x",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check the weather.",
                "reasoning_content": "User wants weather.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris", "unit": "celsius"}',
                        },
                    },
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    "system_fingerprint": "fp_x",
}


def events(body: bytes) -> list[dict[str, Any] | str]:
    dec = SSEDecoder()
    out: list[dict[str, Any] | str] = []
    for ev in [*dec.feed(body), *dec.close()]:
        out.append(ev.data if ev.data == "[DONE]" else json.loads(ev.data))
    assert dec.problems == []
    return out


def deltas(body: bytes) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in events(body)[:-1] if isinstance(c, dict) and c["choices"]]


def test_chunk_order_and_framing() -> None:
    body = synthesize(RESP, usage=True, chunk_chars=8)
    evs = events(body)
    assert evs[-1] == "[DONE]" and body.endswith(b"\n\ndata: [DONE]\n\n")
    chunks = evs[:-1]
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert (c["id"], c["created"], c["model"], c["system_fingerprint"]) == (
            "chatcmpl-1",
            1700000000,
            "gpt-x",
            "fp_x",
        )
    ds = deltas(body)
    assert ds[0] == {"role": "assistant"}
    kinds = [next(iter(d), "finish") for d in ds]
    # role, reasoning before content, then tool calls, then the finish chunk
    assert kinds[1] == "reasoning_content"
    assert kinds.index("content") > max(i for i, k in enumerate(kinds) if k == "reasoning_content")
    assert kinds.index("tool_calls") > max(i for i, k in enumerate(kinds) if k == "content")
    assert all(len(d.get("content", "")) <= 8 for d in ds)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and ds[-1] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == RESP["usage"]


def test_tool_call_first_delta_carries_id_name_and_empty_arguments() -> None:
    # as OpenAI (and llama.cpp since its #13800 fix) stream it: the first delta of a call has
    # "arguments": "", the arguments follow in later deltas. An accumulation loop written against
    # that shape (first delta sets, later deltas append) must not see the first piece twice.
    calls = [d["tool_calls"][0] for d in deltas(synthesize(RESP, chunk_chars=8)) if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert calls[1] == {"index": 0, "function": {"arguments": '{"city":'}}
    assert all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in calls[1:5])
    # never a placeholder such as "{}" that parses before the real arguments arrive
    second = [c for c in calls if c["index"] == 1]
    assert second == [
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    expected = RESP["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert "".join(c["function"]["arguments"] for c in calls if c["index"] == 0) == expected
    # the OpenAI-shaped hand-written loop: set on the first delta, append on the others
    by_index: dict[int, str] = {}
    for c in calls:
        if "id" in c:
            by_index[c["index"]] = c["function"]["arguments"]
        else:
            by_index[c["index"]] += c["function"]["arguments"]
    assert by_index[0] == expected


def test_usage_chunk_only_when_asked() -> None:
    no_usage = events(synthesize(RESP))
    assert all("usage" not in c for c in no_usage[:-1])
    assert aggregate(synthesize(RESP, usage=True)) == RESP


def test_logprobs_attached_to_their_content_pieces() -> None:
    toks = ["Hel", "lo", " wor", "ld"]
    lp = {
        "content": [
            {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []} for t in toks
        ],
        "refusal": None,
    }
    resp = completion(
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello world"},
            "logprobs": lp,
            "finish_reason": "stop",
        }
    )
    chunks = [c for c in events(synthesize(resp))[:-1]]
    content_chunks = [c["choices"][0] for c in chunks if "content" in c["choices"][0]["delta"]]
    # the tokens spell the content: one token per chunk, each with its own logprob
    assert [
        (c["delta"]["content"], [e["token"] for e in c["logprobs"]["content"]]) for c in content_chunks
    ] == [(t, [t]) for t in toks]
    assert aggregate(synthesize(resp)) == resp


def test_n_choices_refusal_and_function_call() -> None:
    resp = completion(
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": "I can't help."},
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": '{"q": "long argument"}'},
            },
            "finish_reason": "function_call",
        },
    )
    body = synthesize(resp, chunk_chars=5)
    idx = [c["choices"][0]["index"] for c in events(body)[:-1]]
    assert set(idx) == {0, 1}
    assert aggregate(body) == resp


def test_extras_survive_the_round_trip() -> None:
    resp = {**RESP, "timings": {"predicted_n": 4}, "service_tier": "default"}
    resp["choices"] = [{**RESP["choices"][0], "stop_reason": None}]
    assert aggregate(synthesize(resp, usage=True)) == resp


def test_bad_response_is_named() -> None:
    with pytest.raises(BadResponse, match="no 'choices'"):
        synthesize({"object": "chat.completion"}, "chat")
    with pytest.raises(BadResponse, match=r"choices\[0\] has no 'message'"):
        synthesize({"choices": [{"text": "x"}]}, "chat")


# -- the round trip, over generated completions --------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resp=chat_completions(), chunk_chars=st.integers(1, 12))
def test_round_trip_is_exact(resp: dict[str, Any], chunk_chars: int) -> None:
    body = synthesize(resp, usage=True, chunk_chars=chunk_chars)
    assert aggregate(body) == resp
    assert aggregate(body, "chat") == resp
