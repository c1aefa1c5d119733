"""End to end, the Responses API (``/v1/responses``): a real mitmdump with the addon in front of
the fault upstream's scripted Responses scenarios, driven by the real openai SDK
(``responses.create`` with and without ``stream``, the ``responses.stream()`` helper, sync and
async) and by raw HTTP where status, headers and bytes matter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from fault_upstream import CONTENT, RESP_USAGE, TOOL_ARGS, FaultUpstream, responses_events, responses_sse
from proxy import Mitmdump
from streamshim import aggregate
from streamshim.check import check_stream

pytestmark = pytest.mark.e2e
TEXT = "".join(CONTENT)
ARGS = "".join(TOOL_ARGS)


def sdk(shim: Mitmdump, label: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{shim.url(label)}/v1", api_key="sk-test", max_retries=0, timeout=30)


def post(shim: Mitmdump, label: str, model: str, stream: bool | None = None, **body: Any) -> httpx.Response:
    payload: dict[str, Any] = {"model": model, "input": "hi", **body}
    if stream is not None:
        payload["stream"] = stream
    return httpx.post(f"{shim.url(label)}/v1/responses", json=payload, timeout=30)


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    from streamshim.framing.sse import SSEDecoder

    dec = SSEDecoder()
    return [(e.event, json.loads(e.data)) for e in dec.feed(body) + dec.close()]


# -- the four directions ---------------------------------------------------------------------


def test_json_client_of_a_forced_stream(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = sdk(shim, "stream").responses.create(model="resp-sse", input="json client, forced stream")
    assert (r.status, r.output_text, r.usage.total_tokens) == ("completed", TEXT, 11)
    assert r.output[0].id == "msg_fault"
    sent = fault.last()
    assert sent.path == "/v1/responses" and sent.json()["stream"] is True
    assert "stream_options" not in sent.json()  # usage is in the terminal response: nothing injected
    flow = shim.flow_with(b"json client, forced stream")
    assert flow.comment.startswith("streamshim [force-stream] SSE→JSON:")
    assert flow.marked == ":default:", flow.comment


def test_json_client_of_a_forced_stream_gets_the_body_the_upstream_would_send(shim: Mitmdump) -> None:
    streamed = post(shim, "stream", "resp-sse", stream=False)
    assert streamed.status_code == 200 and streamed.headers["content-type"] == "application/json"
    assert int(streamed.headers["content-length"]) == len(streamed.content)
    direct = post(shim, "asis", "resp-json", stream=False)
    assert streamed.json() == direct.json()


def test_stream_client_of_a_forced_json(shim: Mitmdump, fault: FaultUpstream) -> None:
    with sdk(shim, "json").responses.stream(model="resp-json", input="stream client, forced json") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert deltas == final.output_text == TEXT
    assert final.usage.model_dump(exclude_none=True) == RESP_USAGE
    sent = fault.last().json()
    assert sent["stream"] is False and "stream_options" not in sent


def test_synthesized_stream_on_the_wire(shim: Mitmdump) -> None:
    r = post(shim, "json", "resp-json", stream=True, stream_options={"include_obfuscation": False})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in r.headers
    assert b"[DONE]" not in r.content
    events = events_of(r.content)
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    assert all(name == p["type"] for name, p in events)
    assert events[0][0] == "response.created" and events[-1][0] == "response.completed"
    assert [p["delta"] for _, p in events if "delta" in p][:2] == [
        "Hell",
        "o, w",
    ]  # the rule's chunk_chars: 4
    assert aggregate(r.content) == post(shim, "asis", "resp-json").json()
    assert check_stream(r.content).findings == []


def test_live_passthrough_is_byte_exact(shim: Mitmdump) -> None:
    r = post(shim, "asis", "resp-sse", stream=True, input="byte exact")
    assert r.content == responses_sse(responses_events(_answer()))
    flow = shim.flow_with(b"byte exact")
    assert "ended with response.completed" in flow.comment


def _answer() -> dict[str, Any]:
    from fault_upstream import responses_json

    return responses_json()


def test_stream_client_of_a_forced_stream_passes_through(shim: Mitmdump, fault: FaultUpstream) -> None:
    events = list(sdk(shim, "stream").responses.create(model="resp-sse", input="hi", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == TEXT


@pytest.mark.parametrize("label,model", [("stream", "resp-sse-tools"), ("json", "resp-json-tools")])
def test_function_call_both_ways(shim: Mitmdump, label: str, model: str) -> None:
    c = sdk(shim, label)
    for final in (
        c.responses.create(model=model, input="weather?"),
        _helper_final(c, model),
    ):
        (call,) = final.output
        assert (call.type, call.name, call.call_id, json.loads(call.arguments)) == (
            "function_call",
            "get_weather",
            "call_1",
            {"city": "Paris"},
        )


def _helper_final(c: openai.OpenAI, model: str) -> Any:
    with c.responses.stream(model=model, input="weather?") as s:
        args = "".join(e.delta for e in s if e.type == "response.function_call_arguments.delta")
        final = s.get_final_response()
    assert args == ARGS
    return final


def test_async_clients(shim: Mitmdump) -> None:
    async def run() -> tuple[Any, Any]:
        c = openai.AsyncOpenAI(base_url=f"{shim.url('json')}/v1", api_key="sk-test", max_retries=0)
        async with c.responses.stream(model="resp-json", input="async") as s:
            async for _ in s:
                pass
            streamed = await s.get_final_response()
        j = openai.AsyncOpenAI(base_url=f"{shim.url('stream')}/v1", api_key="sk-test", max_retries=0)
        plain = await j.responses.create(model="resp-sse", input="async")
        return streamed, plain

    streamed, plain = asyncio.run(run())
    assert streamed.output_text == plain.output_text == TEXT


# -- what a JSON client gets from a stream that is not a plain completed one ---------------------


def test_incomplete_is_a_200_with_its_status(shim: Mitmdump) -> None:
    r = sdk(shim, "stream").responses.create(model="resp-incomplete", input="hi")
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == TEXT


def test_codex_empty_terminal_output_is_filled_from_the_done_items(shim: Mitmdump) -> None:
    r = post(shim, "stream", "resp-codex", stream=False, input="codex")
    assert r.status_code == 200
    (call,) = r.json()["output"]
    assert (call["name"], call["arguments"]) == ("get_weather", ARGS)
    flow = shim.flow_with(b"codex")
    assert "empty output" in flow.comment


def test_rotating_item_ids_keep_the_terminal_output(shim: Mitmdump) -> None:
    r = post(shim, "stream", "resp-rotating", stream=False)
    assert r.status_code == 200
    (item,) = r.json()["output"]
    assert item["content"][0]["text"] == TEXT


def _error(r: httpx.Response, *needles: str) -> dict[str, Any]:
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["type"] == "upstream_stream_error"
    for needle in needles:
        assert needle in err["message"], err["message"]
    return dict(err)


@pytest.mark.parametrize(
    "model,needles,code",
    [
        ("resp-failed", ("response.failed", "The model crashed", "event 7"), "upstream_error"),
        ("resp-error-flat", ("error event", "Slow down", "rate_limit_exceeded"), "upstream_error"),
        ("resp-error-nested", ("error event", "Overloaded", "overloaded"), "upstream_error"),
        ("resp-no-terminal", ("without a terminal event", "after 11 events"), "truncated"),
    ],
)
def test_broken_streams_are_never_a_200(
    shim: Mitmdump, model: str, needles: tuple[str, ...], code: str
) -> None:
    err = _error(post(shim, "stream", model, stream=False), *needles)
    assert err["code"] == code
    partial = err["partial_response"]
    assert partial["id"] == "resp_fault" and partial["status"] != "completed"
    text = partial["output"][0]["content"][0]["text"] if partial["output"] else ""
    assert TEXT.startswith(text) and text  # what arrived before the fault
    with pytest.raises(openai.InternalServerError) as exc:
        sdk(shim, "stream").responses.create(model=model, input="hi")
    assert exc.value.status_code == 502 and needles[0] in str(exc.value)


def test_an_upstream_that_drops_mid_stream_is_not_a_200(shim: Mitmdump) -> None:
    # mitmproxy answers a body cut while streamshim buffers it with its own 502 (README "Limits")
    r = post(shim, "stream", "resp-cut:6", stream=False)
    assert r.status_code == 502 and b"output_text" not in r.content


def test_error_events_reach_a_stream_client_as_sent(shim: Mitmdump) -> None:
    r = post(shim, "asis", "resp-error-nested", stream=True, input="stream error")
    assert r.status_code == 200 and r.content.endswith(b'"message":"Overloaded"}}\n\n')
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(sdk(shim, "asis").responses.create(model="resp-error-nested", input="hi", stream=True))
    flow = shim.flow_with(b"stream error")
    assert "upstream error" in flow.comment and flow.marked == ":warning:"


# -- requests streamshim leaves alone ---------------------------------------------------------


def test_background_requests_and_other_paths_pass_untouched(shim: Mitmdump, fault: FaultUpstream) -> None:
    post(shim, "stream", "resp-json", stream=False, background=True)
    assert fault.last().json()["stream"] is False  # not forced: a background response is fetched later
    for path in ("/v1/responses/resp_1/cancel", "/v1/responses/input_tokens", "/v1/responses/compact"):
        httpx.post(f"{shim.url('stream')}{path}", json={"model": "resp-json", "input": "x"}, timeout=30)
        assert fault.last().path == path and "stream" not in fault.last().json()


def test_responses_without_v1(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = httpx.post(f"{shim.url('stream')}/responses", json={"model": "resp-sse", "input": "hi"}, timeout=30)
    assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == TEXT
    assert fault.last().path == "/responses" and fault.last().json()["stream"] is True


def test_keepalive_json_client(shim: Mitmdump) -> None:
    r = post(shim, "keepalive", "resp-sse", stream=False)
    assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == TEXT
    failed = post(shim, "keepalive", "resp-failed", stream=False)
    assert failed.status_code == 200  # committed before the answer is known (README "Limits")
    assert "The model crashed" in failed.json()["error"]["message"]


def test_an_upstream_that_ignores_the_flag_is_repaired(shim: Mitmdump) -> None:
    # as-requested: a JSON client answered with a stream, a stream client answered with JSON
    j = sdk(shim, "asis").responses.create(model="resp-sse", input="hi")
    assert j.output_text == TEXT
    with sdk(shim, "asis").responses.stream(model="resp-json", input="hi") as s:
        assert s.get_final_response().output_text == TEXT
