"""Legacy completions (/v1/completions): text_completion streams ⇄ JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from responses import RESPONSES
from streamshim import aggregate, dialects, synthesize
from streamshim.dialects.openai import encode_chunks as encode_data
from streamshim.errors import TruncatedStream


def tc(text: str, index: int = 0, finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "davinci-002",
        "choices": [{"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}],
    }


def test_aggregate_text_and_legacy_logprobs() -> None:
    lp1 = {
        "tokens": ["He", "llo"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"He": -0.1}, {"llo": -0.2}],
        "text_offset": [0, 2],
    }
    lp2 = {"tokens": ["!"], "token_logprobs": [-0.3], "top_logprobs": [{"!": -0.3}], "text_offset": [5]}
    usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    body = encode_data(
        [
            tc("Hello", logprobs=lp1),
            tc("!", logprobs=lp2, finish="length"),
            {**tc(""), "choices": [], "usage": usage},
        ]
    )
    out = aggregate(body)
    assert dialects.detect(json.loads(body.split(b"\n")[0][6:])) is dialects.completions.DIALECT
    assert out == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "davinci-002",
        "choices": [
            {
                "text": "Hello!",
                "index": 0,
                "finish_reason": "length",
                "logprobs": {
                    "tokens": ["He", "llo", "!"],
                    "token_logprobs": [-0.1, -0.2, -0.3],
                    "top_logprobs": [{"He": -0.1}, {"llo": -0.2}, {"!": -0.3}],
                    "text_offset": [0, 2, 5],
                },
            }
        ],
        "usage": usage,
    }


def test_n_choices_and_truncation() -> None:
    body = encode_data([tc("a", 1), tc("b", 0), tc("", 0, "stop")], done=False)
    with pytest.raises(TruncatedStream, match="choice\\(s\\) 1 without finish_reason") as ei:
        aggregate(body)
    assert [c["text"] for c in ei.value.partial["choices"]] == ["b", "a"]


def test_synthesize_slices_logprobs_with_the_text() -> None:
    resp = {
        "id": "cmpl-2",
        "object": "text_completion",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "text": "Hello world",
                "index": 0,
                "finish_reason": "stop",
                "logprobs": {
                    "tokens": ["Hello", " world"],
                    "token_logprobs": [-1.0, -2.0],
                    "top_logprobs": [None, None],
                    "text_offset": [0, 5],
                },
            }
        ],
    }
    body = synthesize(resp)
    dec = [json.loads(line[6:]) for line in body.split(b"\n\n") if line.startswith(b"data: {")]
    pieces = [(c["choices"][0]["text"], (c["choices"][0]["logprobs"] or {}).get("tokens")) for c in dec]
    assert pieces == [("Hello", ["Hello"]), (" world", [" world"]), ("", None)]
    assert all(c["object"] == "text_completion" for c in dec)
    assert aggregate(body) == resp


@settings(max_examples=200, deadline=None)
@given(resp=RESPONSES["completions"], chunk_chars=st.integers(1, 8))
def test_round_trip_is_exact(resp: dict[str, Any], chunk_chars: int) -> None:
    assert aggregate(synthesize(resp, usage=True, chunk_chars=chunk_chars)) == resp
