"""Anthropic Messages bodies and streams the tests own: valid messages of every block kind, and the
faults gateways and servers produce (cut before message_stop, cut inside a tool's input JSON, an
overloaded_error event, two generations spliced, pings, padded JSON). The fault upstream serves
them as scenarios ``anth-<name>`` (streams) and ``anth-json-<name>`` (bodies)."""

from __future__ import annotations

import copy
import json
from typing import Any

from streamshim import synthesize

SIGNATURE = "EqQBCkYIBRgCKkB0c2lnbmF0dXJl"
USAGE = {
    "input_tokens": 42,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 7,
    "output_tokens": 19,
    "service_tier": "standard",
}


def message(*content: dict[str, Any], stop_reason: str = "end_turn", **extra: Any) -> dict[str, Any]:
    return {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": "claude-fault",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": dict(USAGE),
        **extra,
    }


TEXT = {"type": "text", "text": "Hello, world! The weather is fine."}
TOOL = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "days": 2}}
THINKING = {
    "type": "thinking",
    "thinking": "The user wants the weather; call the tool.",
    "signature": SIGNATURE,
}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw"}
SERVER_TOOL = {
    "type": "server_tool_use",
    "id": "srvtoolu_01",
    "name": "web_search",
    "input": {"query": "Tokyo population"},
}
SEARCH_RESULT = {
    "type": "web_search_tool_result",
    "tool_use_id": "srvtoolu_01",
    "content": [
        {
            "type": "web_search_result",
            "title": "Tokyo Population 2026",
            "url": "https://example.org/tokyo",
            "encrypted_content": "EqgfCioIBxgCIiQ4",
            "page_age": None,
        }
    ],
}
CITATION = {
    "type": "web_search_result_location",
    "cited_text": "Tokyo's 2026 population is now estimated at 36,953,600. ",
    "url": "https://example.org/tokyo",
    "title": "Tokyo Population 2026",
    "encrypted_index": "Eo8BCioIBxgC",
}
CITED = {"type": "text", "text": "about 37 million people live in Greater Tokyo", "citations": [CITATION]}

MESSAGES: dict[str, dict[str, Any]] = {
    "text": message(TEXT),
    "tool": message({"type": "text", "text": "Let me look."}, TOOL, stop_reason="tool_use"),
    "thinking": message(THINKING, TOOL, stop_reason="tool_use"),
    "redacted": message(REDACTED, TEXT),
    "websearch": message(
        SERVER_TOOL,
        SEARCH_RESULT,
        {"type": "text", "text": "According to the search, "},
        CITED,
        {"type": "text", "text": "."},
        usage={**USAGE, "server_tool_use": {"web_search_requests": 1}},
    ),
}


def stream(name: str, chunk_chars: int = 8) -> bytes:
    """The valid stream of ``MESSAGES[name]``, as streamshim synthesizes it (Anthropic's shape)."""
    return synthesize(copy.deepcopy(MESSAGES[name]), "anthropic", chunk_chars=chunk_chars)


def events(body: bytes) -> list[bytes]:
    """The raw events of a stream (each with its blank line)."""
    return [e + b"\n\n" for e in body.split(b"\n\n") if e]


def event(kind: str, obj: dict[str, Any], pad: int = 0) -> bytes:
    """One event as Anthropic writes it; ``pad`` spaces before the closing brace (Anthropic pads)."""
    data = json.dumps(obj, separators=(",", ":"))
    if pad:
        data = data[:-1] + " " * pad + "}"
    return f"event: {kind}\ndata: {data}\n\n".encode()


PING = b'event: ping\ndata: {"type": "ping"}\n\n'
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def padded(body: bytes) -> bytes:
    """Every event's JSON padded with spaces before its closing brace, and a ping after the first
    content block start, as Anthropic's own streams have them."""
    out = []
    for i, raw in enumerate(events(body)):
        head, data = raw.rstrip(b"\n").split(b"\ndata: ", 1)
        out.append(head + b"\ndata: " + data[:-1] + b" " * (i % 7 + 1) + b"}\n\n")
        if i == 1:
            out.append(PING)
    return b"".join(out)


def cut_before_stop(name: str = "text") -> bytes:
    """Everything up to message_delta, no message_stop."""
    return b"".join(events(stream(name))[:-1])


def cut_in_tool_json() -> bytes:
    """The tool message cut inside the tool's input_json_delta pieces (the JSON half-sent)."""
    evs = events(stream("tool"))
    pieces = [i for i, e in enumerate(evs) if b"input_json_delta" in e and b'"partial_json":""' not in e]
    return b"".join(evs[: pieces[len(pieces) // 2]])


def overloaded(name: str = "text") -> bytes:
    """Some text, then Anthropic's mid-stream overloaded_error event."""
    evs = events(stream(name))
    return b"".join(evs[:4]) + event("error", OVERLOADED)


def spliced() -> bytes:
    """Two generations in one stream: the first cut after some text, the second whole (a gateway
    retrying upstream and gluing the answers)."""
    first = events(stream("text"))[:4]
    second = events(stream("tool"))
    return b"".join(first + second)


def spliced_after_stop() -> bytes:
    """Two whole generations back to back."""
    return stream("text") + stream("tool")


FAULTS = {
    "cut": cut_before_stop,
    "cut-tool": cut_in_tool_json,
    "overloaded": overloaded,
    "spliced": spliced,
    "spliced-after-stop": spliced_after_stop,
}


def scenario(name: str) -> tuple[str, bytes]:
    """The fault upstream's ``anth-…`` scenarios: (content type, body)."""
    if name.startswith("json-"):
        return "application/json", json.dumps(MESSAGES[name[5:]]).encode()
    if name.startswith("padded-"):
        return "text/event-stream", padded(stream(name[7:]))
    if name in FAULTS:
        return "text/event-stream", FAULTS[name]()
    return "text/event-stream", stream(name)
