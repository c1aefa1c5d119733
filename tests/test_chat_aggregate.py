"""Chat completions: SSE chunks → one chat.completion, case by case."""

from __future__ import annotations

import pytest
from helpers import chunk, delta, sse
from streamshim import aggregate
from streamshim.errors import MalformedEvent, NotAStream, StreamError, TruncatedStream, UpstreamErrorEvent


def msg(resp: dict, i: int = 0) -> dict:
    return resp["choices"][i]["message"]


def test_content_and_shape_of_the_result() -> None:
    body = sse(
        chunk(delta(role="assistant", content="", refusal=None), system_fingerprint="fp_1"),
        chunk(delta(content="Hel")),
        chunk(delta(content="lo")),
        chunk(delta(finish_reason="stop")),
        chunk(usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
    )
    assert aggregate(body) == {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "system_fingerprint": "fp_1",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def test_n_choices_in_any_order_starting_with_index_1() -> None:
    body = sse(
        chunk(delta(1, role="assistant", content="B")),
        chunk(delta(0, role="assistant", content="A")),
        chunk(delta(1, content="b", finish_reason="length")),
        chunk(delta(0, content="a", finish_reason="stop")),
    )
    out = aggregate(body)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "Aa", "stop"),
        (1, "Bb", "length"),
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_kept_under_the_upstream_name(field: str) -> None:
    body = sse(
        chunk(delta(role="assistant", **{field: "think"})),
        chunk(delta(**{field: "ing"})),
        chunk(delta(content="ok", finish_reason="stop")),
    )
    m = msg(aggregate(body))
    assert m[field] == "thinking" and m["content"] == "ok"
    other = "reasoning" if field == "reasoning_content" else "reasoning_content"
    assert other not in m


def test_refusal_with_logprobs_arrays_appended() -> None:
    lp1 = {"content": None, "refusal": [{"token": "I", "logprob": -0.1, "bytes": [73], "top_logprobs": []}]}
    lp2 = {
        "content": None,
        "refusal": [{"token": " can't", "logprob": -0.2, "bytes": None, "top_logprobs": []}],
    }
    body = sse(
        chunk(
            {
                "index": 0,
                "delta": {"role": "assistant", "refusal": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ),
        chunk({"index": 0, "delta": {"refusal": "I"}, "logprobs": lp1, "finish_reason": None}),
        chunk({"index": 0, "delta": {"refusal": " can't"}, "logprobs": lp2, "finish_reason": None}),
        chunk({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}),
    )
    c = aggregate(body)["choices"][0]
    assert c["message"]["refusal"] == "I can't"
    assert c["message"]["content"] is None
    assert [t["token"] for t in c["logprobs"]["refusal"]] == ["I", " can't"]
    assert c["logprobs"]["content"] is None


def test_content_logprobs_appended() -> None:
    def lp(tok: str) -> dict:
        return {"content": [{"token": tok, "logprob": -1.0, "bytes": list(tok.encode()), "top_logprobs": []}]}

    body = sse(
        *(
            chunk({"index": 0, "delta": {"content": t}, "logprobs": lp(t), "finish_reason": None})
            for t in ["a", "b", "c"]
        ),
        chunk(delta(finish_reason="stop")),
    )
    c = aggregate(body)["choices"][0]
    assert [t["token"] for t in c["logprobs"]["content"]] == ["a", "b", "c"]


def _call(index: int | None = None, **kw: object) -> dict:
    out: dict = {} if index is None else {"index": index}
    fn = {k: kw.pop(k) for k in ("name", "arguments") if k in kw}
    out.update(kw)
    if fn:
        out["function"] = fn
    return out


def test_tool_calls_merged_by_index_with_id_type_name_once() -> None:
    body = sse(
        chunk(
            delta(
                role="assistant",
                tool_calls=[_call(0, id="call_1", type="function", name="get_weather", arguments="")],
            )
        ),
        chunk(delta(tool_calls=[_call(0, arguments='{"city"')])),
        chunk(delta(tool_calls=[_call(0, arguments=':"Paris"}')])),
        chunk(delta(finish_reason="tool_calls")),
    )
    m = msg(aggregate(body))
    assert m["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert m["content"] is None


def test_llama_cpp_python_repeats_id_and_name_in_every_delta() -> None:
    # llama-cpp-python's server sends id, type and name with every argument piece, and a legacy
    # function_call next to tool_calls. The openai SDK then yields "weatherweatherweather".
    pieces = ['{"ci', 'ty": "', 'Paris"}']
    body = sse(
        chunk(delta(role="assistant", content=None)),
        *(
            chunk(
                delta(
                    tool_calls=[_call(0, id="call_0", type="function", name="weather", arguments=p)],
                    function_call={"name": "weather", "arguments": p},
                )
            )
            for p in pieces
        ),
        chunk(delta(finish_reason="tool_calls")),
    )
    m = msg(aggregate(body))
    assert m["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert m["function_call"] == {"name": "weather", "arguments": '{"city": "Paris"}'}


def test_parallel_tool_calls_and_sparse_index() -> None:
    body = sse(
        chunk(
            delta(role="assistant", tool_calls=[_call(1, id="b", type="function", name="g", arguments="{")])
        ),
        chunk(delta(tool_calls=[_call(2, id="c", type="function", name="h", arguments="{}")])),
        chunk(delta(tool_calls=[_call(1, arguments="}")])),
        chunk(delta(finish_reason="tool_calls")),
    )
    calls = msg(aggregate(body))["tool_calls"]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("b", "g", "{}"),
        ("c", "h", "{}"),
    ]


def test_missing_tool_call_index_each_id_starts_a_new_call() -> None:
    body = sse(
        chunk(delta(tool_calls=[_call(id="x", type="function", name="f", arguments='{"a":')])),
        chunk(delta(tool_calls=[_call(arguments="1}")])),
        chunk(delta(tool_calls=[_call(id="y", type="function", name="g", arguments="{}")])),
        chunk(delta(finish_reason="tool_calls")),
    )
    calls = msg(aggregate(body))["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [("x", '{"a":1}'), ("y", "{}")]


def test_legacy_function_call_alone() -> None:
    body = sse(
        chunk(delta(role="assistant", function_call={"name": "f", "arguments": ""})),
        chunk(delta(function_call={"arguments": '{"x": 1}'})),
        chunk(delta(finish_reason="function_call")),
    )
    m = msg(aggregate(body))
    assert m["function_call"] == {"name": "f", "arguments": '{"x": 1}'}
    assert "tool_calls" not in m


def test_annotations_arriving_in_several_deltas_are_appended() -> None:
    a1 = {
        "type": "url_citation",
        "url_citation": {"url": "https://a.example", "start_index": 0, "end_index": 3},
    }
    a2 = {
        "type": "url_citation",
        "url_citation": {"url": "https://b.example", "start_index": 4, "end_index": 7},
    }
    body = sse(
        chunk(delta(content="abc", annotations=[a1])),
        chunk(delta(content=" def", annotations=[a2])),
        chunk(delta(finish_reason="stop")),
    )
    assert msg(aggregate(body))["annotations"] == [a1, a2]


def test_audio_data_and_transcript_concatenated_other_fields_once() -> None:
    body = sse(
        chunk(
            delta(role="assistant", audio={"id": "au_1", "data": "AAA", "transcript": "he", "expires_at": 99})
        ),
        chunk(delta(audio={"data": "BBB", "transcript": "llo", "expires_at": 99})),
        chunk(delta(finish_reason="stop")),
    )
    assert msg(aggregate(body))["audio"] == {
        "id": "au_1",
        "data": "AAABBB",
        "transcript": "hello",
        "expires_at": 99,
    }


def test_usage_from_final_empty_choices_chunk() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    body = sse(chunk(delta(content="x", finish_reason="stop"), usage=None), chunk(usage=usage))
    assert aggregate(body)["usage"] == usage


def test_vllm_cumulative_usage_last_wins() -> None:
    body = sse(
        chunk(delta(content="a"), usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}),
        chunk(
            delta(content="b", finish_reason="stop"),
            usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        ),
    )
    assert aggregate(body)["usage"]["completion_tokens"] == 2


def test_identity_fields_from_first_non_empty_value_azure_filter_chunk() -> None:
    azure_first = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [],
    }
    body = sse(
        azure_first,
        chunk(
            delta(role="assistant", content="hi"),
            id="chatcmpl-9",
            model="gpt-4o",
            created=7,
            service_tier="default",
        ),
        chunk(
            {"index": 0, "delta": {}, "finish_reason": "stop", "content_filter_results": {"hate": {}}},
            id="chatcmpl-9",
            model="gpt-4o",
            created=7,
        ),
    )
    out = aggregate(body)
    assert (out["id"], out["model"], out["created"], out["service_tier"]) == (
        "chatcmpl-9",
        "gpt-4o",
        7,
        "default",
    )
    assert out["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": {}}]
    assert out["choices"][0]["content_filter_results"] == {"hate": {}}
    assert out["object"] == "chat.completion"


def test_provider_extras_and_obfuscation() -> None:
    body = sse(
        chunk(delta(role="assistant", content="x"), obfuscation="abc", x_groq={"id": "req_1", "seed": 4}),
        chunk(
            delta(finish_reason="stop"),
            obfuscation="defg",
            timings={"predicted_n": 3},
            x_groq={"id": "req_1", "usage": {"total_tokens": 9}},
        ),
    )
    out = aggregate(body)
    assert "obfuscation" not in out
    assert out["timings"] == {"predicted_n": 3}
    assert out["x_groq"] == {"id": "req_1", "seed": 4, "usage": {"total_tokens": 9}}


def test_reasoning_details_merged_by_index_and_type() -> None:
    body = sse(
        chunk(delta(reasoning_details=[{"type": "reasoning.text", "text": "a", "format": "f", "index": 0}])),
        chunk(delta(reasoning_details=[{"type": "reasoning.text", "text": "b", "format": "f", "index": 0}])),
        chunk(
            delta(reasoning_details=[{"type": "reasoning.encrypted", "data": "Z", "format": "f", "index": 0}])
        ),
        chunk(delta(content="ok", finish_reason="stop")),
    )
    assert msg(aggregate(body))["reasoning_details"] == [
        {"type": "reasoning.text", "text": "ab", "format": "f", "index": 0},
        {"type": "reasoning.encrypted", "data": "Z", "format": "f", "index": 0},
    ]


# -- finish_reason and the end of the stream -------------------------------------------------------


def test_explicit_finish_reason_kept() -> None:
    body = sse(
        chunk(
            delta(
                tool_calls=[_call(0, id="a", type="function", name="f", arguments="{}")], finish_reason="stop"
            )
        )
    )
    assert aggregate(body)["choices"][0]["finish_reason"] == "stop"


def test_missing_finish_reason_after_done() -> None:
    tools = sse(chunk(delta(tool_calls=[_call(0, id="a", type="function", name="f", arguments="{}")])))
    text = sse(chunk(delta(content="x")))
    assert aggregate(tools)["choices"][0]["finish_reason"] == "tool_calls"
    assert aggregate(text)["choices"][0]["finish_reason"] == "stop"


def test_all_choices_finished_without_done_is_complete() -> None:
    assert (
        aggregate(sse(chunk(delta(content="x", finish_reason="stop")), done=False))["choices"][0]["message"][
            "content"
        ]
        == "x"
    )


def test_stream_without_done_or_finish_reason_is_truncated_with_partial() -> None:
    body = sse(chunk(delta(0, content="par")), chunk(delta(1, content="b", finish_reason="stop")), done=False)
    with pytest.raises(TruncatedStream) as ei:
        aggregate(body)
    err = ei.value
    assert "without [DONE]" in err.message and "choice(s) 0 without finish_reason" in err.message
    assert err.partial is not None
    assert err.partial["choices"][0]["message"]["content"] == "par"
    assert err.partial["choices"][0]["finish_reason"] is None  # not dressed up as "stop"


def test_error_payload_mid_stream() -> None:
    body = sse(chunk(delta(content="ab")), {"error": {"message": "overloaded", "type": "server_error"}})
    with pytest.raises(UpstreamErrorEvent) as ei:
        aggregate(body)
    assert "overloaded" in ei.value.message
    assert ei.value.event_number == 2
    assert ei.value.upstream_error == {"message": "overloaded", "type": "server_error"}
    assert ei.value.partial["choices"][0]["message"]["content"] == "ab"


def test_event_error_type() -> None:
    body = sse(chunk(delta(content="ab"))).replace(b"data: [DONE]", b'event: error\ndata: {"message":"boom"}')
    with pytest.raises(UpstreamErrorEvent) as ei:
        aggregate(body)
    assert "boom" in ei.value.message and ei.value.event_number == 2


def test_malformed_json_is_a_typed_error_with_position() -> None:
    good = sse(chunk(delta(content="ab")), done=False)
    body = good + b'data: {"id": "c1", "choices": [\n\n'
    with pytest.raises(MalformedEvent) as ei:
        aggregate(body)
    assert ei.value.event_number == 2 and ei.value.byte_offset == len(good)
    assert "not valid JSON" in ei.value.message
    with pytest.raises(MalformedEvent, match="not an object"):
        aggregate(b"data: [1, 2]\n\n")


def test_html_body_is_not_a_stream() -> None:
    with pytest.raises(NotAStream, match=r"not an event stream.*<html>"):
        aggregate(b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(TruncatedStream, match="empty"):
        aggregate(b"")


def test_error_to_openai_shape() -> None:
    from streamshim.dialects import chat

    with pytest.raises(StreamError) as ei:
        aggregate(sse(chunk(delta(content="x")), done=False))
    exc = ei.value
    body = chat.DIALECT.error_body(exc.describe(), exc.kind, partial=exc.partial)
    assert body["error"]["type"] == "upstream_stream_error"
    assert body["error"]["code"] == "truncated"
    assert "without [DONE]" in body["error"]["message"]
    assert body["error"]["partial_response"]["choices"][0]["message"]["content"] == "x"


def test_an_empty_answer_has_empty_content_as_the_non_stream_body_does() -> None:
    # llama-cpp-python streams a role delta, then finish_reason stop, and no content delta for an
    # empty answer; its own non-stream body says "content": "" (a null there makes the same server
    # reject the message when a harness sends it back as history)
    body = sse(chunk(delta(role="assistant")), chunk(delta(finish_reason="stop")))
    assert msg(aggregate(body)) == {"role": "assistant", "content": ""}
    # null stays where the stream said null, and beside tool calls or a refusal (as OpenAI's body)
    explicit = sse(chunk(delta(role="assistant", content=None)), chunk(delta(finish_reason="stop")))
    assert msg(aggregate(explicit))["content"] is None
    refusal = sse(chunk(delta(role="assistant", refusal="no")), chunk(delta(finish_reason="stop")))
    assert msg(aggregate(refusal)) == {"role": "assistant", "content": None, "refusal": "no"}
    calls = sse(
        chunk(
            delta(role="assistant", tool_calls=[_call(0, id="c", type="function", name="f", arguments="{}")])
        ),
        chunk(delta(finish_reason="tool_calls")),
    )
    assert msg(aggregate(calls))["content"] is None


def test_generated_pieces_and_the_usage_estimate() -> None:
    from streamshim.dialects import chat
    from streamshim.dialects.base import CHARS_PER_TOKEN

    body = sse(
        chunk(delta(role="assistant")),
        chunk(delta(reasoning_content="hm")),
        chunk(delta(content="a")),
        chunk(delta(content="b")),
        chunk(delta(tool_calls=[_call(0, id="c", type="function", name="f", arguments="{}")])),
        chunk(delta(finish_reason="tool_calls")),
    )
    agg = chat.DIALECT.aggregator()
    agg.feed(body)
    agg.finish()
    assert agg.generated_pieces() == 4  # reasoning, two content pieces, one tool-call delta
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "abcd"},
            {"role": "user", "content": [{"type": "text", "text": "efgh"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    # 4 + 4 characters of text and the tool definition as compact JSON (43): 51 / 4, rounded up
    assert CHARS_PER_TOKEN == 4

    def filled(method: str, generated: int, req: object) -> dict | None:
        resp: dict = {"choices": []}
        chat.DIALECT.fill_usage(resp, method, generated, req)
        return resp.get("usage")

    assert filled("estimate", 4, request) == {"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17}
    assert filled("zeros", 4, request) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert filled("off", 4, request) is None
    assert filled("estimate", 0, None) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    # a usage the stream carried is never replaced
    carried = {"usage": {"prompt_tokens": 9}}
    assert chat.DIALECT.fill_usage(carried, "estimate", 4, request) is None
    assert carried == {"usage": {"prompt_tokens": 9}}
