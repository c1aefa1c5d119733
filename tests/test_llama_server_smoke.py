"""Smoke test of llama.cpp's C++ ``llama-server`` (tests/llama_cpp_server.py) on the tiny GGUF: each
dialect the slow tier will drive answers 200 with the shape of that dialect, as JSON and as a
stream, and at temperature 0 the stream carries the same text (or tool call) as the JSON body.

It talks to the server directly (no proxy) and reads the wire with httpx: the openai SDK's
``responses.stream()`` helper fails on this server's Responses stream (no ``output_index`` /
``content_index`` / ``sequence_number``), so the SDKs are not the judge here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from llama_cpp_server import CHATML_TOOLS_TEMPLATE, LlamaCppServer, start_llama_cpp_server
from streamshim.framing import Event
from streamshim.framing.sse import SSEDecoder

pytestmark = [pytest.mark.slow]

PROMPT = "Say hi"
# an enum keeps the grammar-constrained argument short and closed whatever the random weights prefer
CITIES = ["Paris", "London", "Tokyo"]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": CITIES}},
    "required": ["city"],
}
# the assistant turn is pre-filled with the template's tool-call opener: llama.cpp continues it, and
# its grammar then forces the call (with tool_choice required alone the tiny model writes text)
PREFILL = "<tool_call>\n"
TOOL_TURN = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": PREFILL}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    s = start_llama_cpp_server(tmp_path_factory.mktemp("llama-server"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    workdir = tmp_path_factory.mktemp("llama-server-tools")
    s = start_llama_cpp_server(workdir, chat_template_file=CHATML_TOOLS_TEMPLATE)
    yield s
    s.stop()


def post_json(server: LlamaCppServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{server.url}{path}", json={**body, "stream": False}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = r.json()
    return answer


def post_stream(server: LlamaCppServer, path: str, body: dict[str, Any]) -> list[Event]:
    r = httpx.post(f"{server.url}{path}", json={**body, "stream": True}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    dec = SSEDecoder()
    events = dec.feed(r.content) + dec.close()
    assert not dec.problems
    assert events
    return events


def named_events(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of a Responses or Messages stream; the ``type`` field names the event too."""
    out = []
    for ev in events:
        data = json.loads(ev.data)
        assert data["type"] == ev.event
        out.append((ev.event, data))
    return out


# --- /v1/chat/completions ------------------------------------------------------------------------


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, **extra}


def test_chat_completions_json_and_stream(server: LlamaCppServer) -> None:
    body = chat_body(max_tokens=32)
    answer = post_json(server, "/v1/chat/completions", body)
    assert answer["object"] == "chat.completion"
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    text = choice["message"]["content"]
    assert isinstance(text, str) and text
    assert answer["usage"]["completion_tokens"] > 0

    events = post_stream(server, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}})
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(ev.data) for ev in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == answer["usage"]["completion_tokens"]


# --- /v1/responses -------------------------------------------------------------------------------


def responses_body(**extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "input": PROMPT, "temperature": 0, **extra}


def test_responses_json_and_stream(server: LlamaCppServer) -> None:
    body = responses_body(max_output_tokens=32)
    answer = post_json(server, "/v1/responses", body)
    assert answer["object"] == "response"
    assert answer["status"] == "completed"
    assert answer["id"].startswith("resp_")
    (item,) = answer["output"]
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", "completed")
    (part,) = item["content"]
    assert part["type"] == "output_text"
    text = part["text"]
    assert isinstance(text, str) and text
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    events = named_events(post_stream(server, "/v1/responses", body))
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert "".join(d["delta"] for name, d in events if name == "response.output_text.delta") == text
    assert events[-4][1]["text"] == text
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["id"] == events[0][1]["response"]["id"]
    assert final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["output_tokens"] == usage["output_tokens"]


# --- /v1/messages --------------------------------------------------------------------------------


def messages_body(**extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "temperature": 0, **extra}


def test_messages_json_and_stream(server: LlamaCppServer) -> None:
    body = messages_body(max_tokens=32)
    answer = post_json(server, "/v1/messages", body)
    assert (answer["type"], answer["role"], answer["stop_reason"]) == ("message", "assistant", "end_turn")
    (block,) = answer["content"]
    assert block["type"] == "text"
    text = block["text"]
    assert isinstance(text, str) and text
    assert answer["usage"]["output_tokens"] > 0

    events = named_events(post_stream(server, "/v1/messages", body))
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    assert events[0][1]["message"]["content"] == []
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [d["delta"] for name, d in events if name == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == text
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == answer["usage"]["output_tokens"]


def test_messages_max_tokens_stop(server: LlamaCppServer) -> None:
    answer = post_json(server, "/v1/messages", messages_body(max_tokens=2))
    assert answer["stop_reason"] == "max_tokens"
    assert answer["usage"]["output_tokens"] == 2


# --- tool calls (chatml_tools.jinja and a pre-filled tool-call opener) --------------------------


def test_chat_completions_tool_call(tool_server: LlamaCppServer) -> None:
    body = chat_body(
        max_tokens=256,
        messages=TOOL_TURN,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}],
        tool_choice="required",
    )
    answer = post_json(tool_server, "/v1/chat/completions", body)
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    arguments = call["function"]["arguments"]
    assert json.loads(arguments)["city"] in CITIES

    events = post_stream(tool_server, "/v1/chat/completions", body)
    assert events[-1].data == "[DONE]"
    deltas = [json.loads(ev.data)["choices"][0]["delta"] for ev in events[:-1]]
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == arguments


def test_responses_tool_call(tool_server: LlamaCppServer) -> None:
    body = responses_body(
        max_output_tokens=256,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "message", "role": "assistant", "content": PREFILL},
        ],
        tools=[{"type": "function", "name": "get_weather", "parameters": SCHEMA}],
        tool_choice="required",
    )
    answer = post_json(tool_server, "/v1/responses", body)
    (item,) = answer["output"]
    assert (item["type"], item["name"], item["status"]) == ("function_call", "get_weather", "completed")
    assert item["call_id"].startswith("call_")
    arguments = item["arguments"]
    assert json.loads(arguments)["city"] in CITIES

    events = named_events(post_stream(tool_server, "/v1/responses", body))
    added = [d["item"] for name, d in events if name == "response.output_item.added"]
    assert [(i["type"], i["name"]) for i in added] == [("function_call", "get_weather")]
    args = "".join(d["delta"] for name, d in events if name == "response.function_call_arguments.delta")
    assert args == arguments
    assert events[-1][0] == "response.completed"
    assert events[-1][1]["response"]["output"][0]["arguments"] == arguments


def test_messages_tool_use(tool_server: LlamaCppServer) -> None:
    body = messages_body(
        max_tokens=256,
        messages=TOOL_TURN,
        tools=[{"name": "get_weather", "input_schema": SCHEMA}],
        tool_choice={"type": "any"},
    )
    answer = post_json(tool_server, "/v1/messages", body)
    assert answer["stop_reason"] == "tool_use"
    (block,) = answer["content"]
    assert (block["type"], block["name"]) == ("tool_use", "get_weather")
    assert block["input"]["city"] in CITIES

    events = named_events(post_stream(tool_server, "/v1/messages", body))
    starts = [d["content_block"] for name, d in events if name == "content_block_start"]
    assert [(b["type"], b["name"]) for b in starts] == [("tool_use", "get_weather")]
    partial = "".join(d["delta"]["partial_json"] for name, d in events if name == "content_block_delta")
    assert json.loads(partial) == block["input"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
