"""The openai SDK reading a Responses body the tests hand it (its own HTTP stack on a mock
transport: the SDK's Stream, SSE decoder and ``ResponseStreamState`` run as they do against a
server). Works with openai 2.x (httpx) and 3.x (httpx2)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import _base_client

HTTP = getattr(_base_client, "httpx2", None) or _base_client.httpx  # the HTTP library this openai uses
MAJOR = int(openai.__version__.split(".")[0])


@dataclass
class Read:
    final: Any = None  # the SDK's final response (helper) or the terminal event's response (create)
    events: list[Any] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def failed(self) -> str:
        return f"{type(self.error).__name__}: {self.error}" if self.error else ""


def _handler(body: bytes, status: int, ctype: str) -> Any:
    def handle(request: Any) -> Any:
        return HTTP.Response(status, headers={"content-type": ctype}, content=body)

    return handle


def client(body: bytes, status: int = 200, ctype: str = "text/event-stream") -> openai.OpenAI:
    http = HTTP.Client(transport=HTTP.MockTransport(_handler(body, status, ctype)))
    return openai.OpenAI(base_url="http://sdk.test/v1", api_key="sk-test", http_client=http, max_retries=0)


def async_client(body: bytes, status: int = 200, ctype: str = "text/event-stream") -> openai.AsyncOpenAI:
    http = HTTP.AsyncClient(transport=HTTP.MockTransport(_handler(body, status, ctype)))
    return openai.AsyncOpenAI(
        base_url="http://sdk.test/v1", api_key="sk-test", http_client=http, max_retries=0
    )


REQUEST: dict[str, Any] = {"model": "m", "input": "hi"}


def helper(body: bytes) -> Read:
    """``client.responses.stream(...)`` and ``get_final_response()``."""
    out = Read()
    try:
        with client(body).responses.stream(**REQUEST) as s:
            for ev in s:
                out.events.append(ev)
            out.final = s.get_final_response()
    except Exception as exc:  # the SDK's verdict is what is measured
        out.error = exc
    return out


def helper_async(body: bytes) -> Read:
    async def run() -> Read:
        out = Read()
        try:
            async with async_client(body).responses.stream(**REQUEST) as s:
                async for ev in s:
                    out.events.append(ev)
                out.final = await s.get_final_response()
        except Exception as exc:
            out.error = exc
        return out

    return asyncio.run(run())


def create_stream(body: bytes) -> Read:
    """``client.responses.create(stream=True)``: the raw events; ``final`` is the terminal's response."""
    out = Read()
    try:
        for ev in client(body).responses.create(**REQUEST, stream=True):
            out.events.append(ev)
            if ev.type in ("response.completed", "response.incomplete", "response.failed"):
                out.final = ev.response
    except Exception as exc:
        out.error = exc
    return out
