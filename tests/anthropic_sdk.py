"""The real anthropic SDK as the judge of Anthropic Messages streams: its stream accumulator
(``client.messages.stream(...)`` → ``get_final_message()``) and its non-stream client, fed the
bytes of a test through the SDK's own HTTP client (a transport that answers with those bytes), so
its SSE decoder, event filter and accumulator all run.

anthropic < 1.0 uses httpx; 1.x and later use httpx2 (``httpx_module``)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")

MAJOR = int(anthropic.__version__.split(".")[0])
REQUEST: dict[str, Any] = {
    "model": "claude-fault",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def httpx_module() -> ModuleType:
    """The HTTP library the installed SDK is built on."""
    return importlib.import_module("httpx2" if MAJOR >= 1 else "httpx")


def client_for(body: bytes, status: int = 200, content_type: str = "text/event-stream", **kw: Any) -> Any:
    """An SDK client whose every request is answered with ``body``."""
    hx = httpx_module()

    def handler(request: Any) -> Any:
        return hx.Response(status, headers={"content-type": content_type}, content=body)

    return anthropic.Anthropic(
        api_key="test",
        base_url="http://anthropic.test",
        max_retries=kw.pop("max_retries", 0),
        http_client=hx.Client(transport=hx.MockTransport(handler)),
        **kw,
    )


def final_message(body: bytes) -> dict[str, Any]:
    """What ``messages.stream(...).get_final_message()`` makes of a stream body, as a dict
    (raises what the SDK raises)."""
    with client_for(body).messages.stream(**REQUEST) as s:
        message = s.get_final_message()
    out: dict[str, Any] = message.to_dict()
    return out


def sdk_outcome(body: bytes) -> str | dict[str, Any]:
    """The final message, or ``"raises <Exception>"``."""
    try:
        return final_message(body)
    except Exception as exc:  # the SDK's verdict, whatever it is
        return f"raises {type(exc).__name__}"


def parsed_message(body: bytes) -> dict[str, Any]:
    """What ``messages.create()`` (non-stream) makes of a JSON body."""
    message = client_for(body, content_type="application/json").messages.create(**REQUEST)
    out: dict[str, Any] = message.to_dict()
    return out


def without_sdk_fields(message: dict[str, Any], wire: dict[str, Any]) -> dict[str, Any]:
    """The SDK's message without the null fields it adds that the wire did not have
    (``stop_details``, ``container``…), at the top level and in usage."""
    out = {k: v for k, v in message.items() if k in wire or v is not None}
    if isinstance(out.get("usage"), dict) and isinstance(wire.get("usage"), dict):
        out["usage"] = {k: v for k, v in out["usage"].items() if k in wire["usage"] or v is not None}
    return out
