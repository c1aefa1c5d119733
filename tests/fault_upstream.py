"""A small OpenAI-shaped upstream the tests own, for what a real server can't be made to do on
demand: disconnect mid-stream, error events, gzip, CRLF, keep-alive comments, JSON to a stream
request, SSE to a non-stream request, 4xx/5xx, pacing. Scenarios ``anth-…`` are Anthropic
Messages streams and bodies (``anthropic_streams.py``).

The scenario is the request's ``model`` (e.g. ``"sse"``, ``"disconnect-2"``; ``"resp-…"`` for the
Responses API: ``responses_scenario``). It writes raw bytes on
a plain asyncio socket, so that every framing detail is under the test's control. It runs in a
background thread of the test process and records every request it receives.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anthropic_streams
from streamshim import synthesize
from streamshim.dialects.openai import encode_chunks as encode_data

CONTENT = ["Hel", "lo", ", ", "wor", "ld", "!"]
TOOL_ARGS = ['{"ci', 'ty": "', "Par", 'is"}']
USAGE = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}


def chat_chunks(tools: bool = False, repeat_name: bool = False, usage: bool = True) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fault",
    }

    def ch(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    out = [ch({"role": "assistant", "content": "" if not tools else None})]
    if tools:
        for i, piece in enumerate(TOOL_ARGS):
            call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
            if i == 0 or repeat_name:
                call.update(id="call_1", type="function")
                call["function"] = {"name": "get_weather", "arguments": piece}
            out.append(ch({"tool_calls": [call]}))
        out.append(ch({}, "tool_calls"))
    else:
        out += [ch({"content": c}) for c in CONTENT]
        out.append(ch({}, "stop"))
    if usage:
        out.append({**base, "choices": [], "usage": USAGE})
    return out


def tools_in_choice1() -> dict[str, Any]:
    """Choice 0 an empty text answer, choice 1 the tool call (what ``promote_tool_calls`` is for)."""
    with_tools = chat_json(tools=True)
    call_choice = {**with_tools["choices"][0], "index": 1}
    text_choice = {
        "index": 0,
        "message": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": "stop",
    }
    return {**with_tools, "choices": [text_choice, call_choice]}


def chat_json(tools: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if tools else "".join(CONTENT)}
    if tools:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "".join(TOOL_ARGS)},
            }
        ]
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fault",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tools else "stop",
            }
        ],
        "usage": USAGE,
    }


# -- the Responses API (/v1/responses): scenarios whose model starts with "resp-" ----------------

RESP_USAGE = {
    "input_tokens": 5,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 6,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 11,
}


def responses_json(tools: bool = False, status: str = "completed") -> dict[str, Any]:
    """A Responses body: the text answer, or a function call (get_weather, Paris)."""
    item: dict[str, Any]
    if tools:
        item = {
            "id": "fc_fault",
            "type": "function_call",
            "status": "completed",
            "arguments": "".join(TOOL_ARGS),
            "call_id": "call_1",
            "name": "get_weather",
        }
    else:
        text = {"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(CONTENT)}
        item = {
            "id": "msg_fault",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [text],
        }
    return {
        "id": "resp_fault",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": "fault",
        "output": [item],
        "usage": RESP_USAGE,
    }


def responses_events(answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, payload) list streamshim synthesizes for ``answer``."""
    from streamshim.framing.sse import SSEDecoder

    dec = SSEDecoder()
    body = synthesize(answer, "responses", chunk_chars=4)
    return [(e.event, json.loads(e.data)) for e in dec.feed(body) + dec.close()]


def responses_sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(p, separators=(',', ':'))}\n\n".encode() for name, p in events
    )


def responses_scenario(name: str) -> list[tuple[str, dict[str, Any]]] | dict[str, Any] | None:
    """The events (a stream) or the body (JSON) of a ``resp-…`` scenario; None: unknown."""
    text = responses_events(responses_json())
    error_at = 6  # after two text deltas ("Hello, w")
    if name == "resp-json":
        return responses_json()
    if name == "resp-json-tools":
        return responses_json(tools=True)
    if name == "resp-json-incomplete":
        return responses_json(status="incomplete")
    if name == "resp-sse":
        return text
    if name == "resp-sse-tools":
        return responses_events(responses_json(tools=True))
    if name == "resp-incomplete":
        return responses_events(responses_json(status="incomplete"))
    if name == "resp-failed":  # the terminal event is response.failed
        failed = {**responses_json(), "status": "failed", "output": []}
        failed["error"] = {"code": "server_error", "message": "The model crashed"}
        return [*text[:error_at], ("response.failed", {"type": "response.failed", "response": failed})]
    if name == "resp-error-flat":  # {"type":"error","code","message","param"}
        err = {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down", "param": None}
        return [*text[:error_at], ("error", err)]
    if name == "resp-error-nested":  # {"type":"error","error":{…}}
        err = {
            "type": "error",
            "error": {"type": "server_error", "code": "overloaded", "message": "Overloaded"},
        }
        return [*text[:error_at], ("error", err)]
    if name == "resp-no-terminal":  # a clean HTTP end, no terminal event
        return text[:-1]
    if name == "resp-codex":  # the Codex backend: the terminal response's output is []
        tool = responses_events(responses_json(tools=True))
        tool[-1][1]["response"]["output"] = []
        return tool
    if name == "resp-rotating":  # GitHub Copilot's gateway: a new item id in every event
        rotated = responses_events(responses_json())
        for i, (_, p) in enumerate(rotated):
            if "item_id" in p:
                p["item_id"] = f"msg_rot{i}"
            if isinstance(p.get("item"), dict):
                p["item"] = {**p["item"], "id": f"msg_rot{i}"}
        return rotated
    return None


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FaultUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> FaultUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:
            # end the connections still open (a stalled scenario sleeps) before the loop stops
            asyncio.run_coroutine_threadsafe(self._cancel_handlers(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _cancel_handlers(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def last(self) -> Received:
        return self.received[-1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(method, path, headers, body))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                model = parsed.get("model", "sse") if isinstance(parsed, dict) else "json"
                keep = await self._respond(str(model), writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _respond(self, scenario: str, w: asyncio.StreamWriter) -> bool:
        """Write the scenario's response; False closes the connection afterwards."""
        name, _, arg = scenario.partition(":")
        n = int(arg) if arg.isdigit() else 0
        if name.startswith("anth-"):  # Anthropic Messages (tests/anthropic_streams.py)
            ctype, body = anthropic_streams.scenario(name[5:])
            if ctype == "application/json":
                return await self._raw(w, 200, ctype, body)
            return await self._sse(w, body)
        if name == "sse":
            return await self._sse(w, encode_data(chat_chunks()))
        if name == "sse-tools":
            return await self._sse(w, encode_data(chat_chunks(tools=True, repeat_name=True)))
        if name == "sse-crlf":
            body = encode_data(chat_chunks()).replace(b"\n", b"\r\n")
            return await self._sse(
                w, b": keep-alive\r\n\r\n" + body[:40], body[40:] + b": OPENROUTER PROCESSING\r\n\r\n"
            )
        if name == "sse-gzip":
            return await self._sse(w, gzip.compress(encode_data(chat_chunks())), encoding="gzip")
        if name == "sse-br":
            import brotli

            return await self._sse(w, brotli.compress(encode_data(chat_chunks())), encoding="br")
        if name == "sse-deflate":
            import zlib

            return await self._sse(w, zlib.compress(encode_data(chat_chunks())), encoding="deflate")
        if name == "sse-corrupt-gzip":
            good = gzip.compress(encode_data(chat_chunks()))
            return await self._sse(w, good[:30] + b"\x00garbage\xff" * 8, encoding="gzip")
        if name == "sse-paced":  # one chunk every 50 ms: shows the passthrough is live
            chunks = [encode_data([c], done=False) for c in chat_chunks()] + [b"data: [DONE]\n\n"]
            return await self._sse(w, *chunks, pause=0.05)
        if name == "disconnect":  # n events, then the socket closes without the chunked terminator
            parts = [encode_data([c], done=False) for c in chat_chunks()[:n]]
            await self._sse(w, *parts, end=False)
            return False
        if name == "reset":  # the connection drops before any response byte
            return False
        if name == "stall":  # headers and one event, then nothing for a long time
            await self._sse(w, encode_data(chat_chunks()[:1], done=False), end=False)
            await asyncio.sleep(n or 30)
            return False
        if name == "error-event":
            return await self._sse(
                w,
                encode_data(chat_chunks()[:3], done=False)
                + b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n',
            )
        if name == "error-then-done":  # an error payload mid-stream, then more, then [DONE] (vLLM)
            return await self._sse(
                w,
                encode_data(chat_chunks()[:2], done=False)
                + b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'
                + encode_data(chat_chunks()[2:3]),
            )
        if name == "event-error":
            return await self._sse(
                w, encode_data(chat_chunks()[:2], done=False) + b'event: error\ndata: {"message": "boom"}\n\n'
            )
        if name == "malformed":
            return await self._sse(w, encode_data(chat_chunks()[:2], done=False) + b"data: {not json\n\n")
        if name == "no-terminator":  # a clean HTTP end, but no [DONE] and no finish_reason
            return await self._sse(w, encode_data(chat_chunks()[:4], done=False))
        if name.startswith("resp-"):
            found = responses_scenario(name)
            if isinstance(found, dict):
                return await self._json(w, found)
            if found is not None:
                return await self._sse(w, responses_sse(found))
        if name == "resp-cut":  # n events of the text answer, then the connection drops mid-body
            parts = [responses_sse([e]) for e in responses_events(responses_json())[:n]]
            await self._sse(w, *parts, end=False)
            return False
        if name == "json":
            return await self._json(w, chat_json())
        if name == "json-tools":
            return await self._json(w, chat_json(tools=True))
        if name == "json-tools-choice1":  # a server that answers the tool call in choices[1]
            return await self._json(w, tools_in_choice1())
        if name == "sse-tools-choice1":
            return await self._sse(w, synthesize(tools_in_choice1()))
        if name == "json-gzip":
            return await self._json(w, chat_json(), encoding="gzip")
        if name == "json-br":
            return await self._json(w, chat_json(), encoding="br")
        if name == "json-corrupt-gzip":
            return await self._raw(w, 200, "application/json", b"\x1f\x8b\x08\x00garbage", encoding="gzip")
        if name == "status-json":
            err = {"error": {"message": "rate limited", "type": "rate_limit_error", "code": None}}
            return await self._json(w, err, status=n or 429)
        if name == "status-html":
            return await self._raw(w, n or 502, "text/html", b"<html><body>502 Bad Gateway</body></html>")
        if name == "html":
            return await self._raw(w, 200, "text/html", b"<html><body>gateway login</body></html>")
        return await self._raw(w, 404, "text/plain", f"unknown scenario {scenario!r}".encode())

    async def _sse(
        self, w: asyncio.StreamWriter, *parts: bytes, encoding: str = "", pause: float = 0.0, end: bool = True
    ) -> bool:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        head += "transfer-encoding: chunked\r\n"
        if encoding:
            head += f"content-encoding: {encoding}\r\n"
        w.write((head + "\r\n").encode())
        for i, part in enumerate(parts):
            if pause and i:
                await w.drain()
                await asyncio.sleep(pause)
            if part:
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
        if end:
            w.write(b"0\r\n\r\n")
        await w.drain()
        return end

    async def _json(self, w: asyncio.StreamWriter, obj: Any, status: int = 200, encoding: str = "") -> bool:
        body = json.dumps(obj).encode()
        if encoding == "gzip":
            body = gzip.compress(body)
        elif encoding == "br":
            import brotli

            body = brotli.compress(body)
        return await self._raw(w, status, "application/json", body, encoding)

    async def _raw(
        self, w: asyncio.StreamWriter, status: int, ctype: str, body: bytes, encoding: str = ""
    ) -> bool:
        head = f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
        if encoding:
            head += f"content-encoding: {encoding}\r\n"
        w.write((head + "\r\n").encode() + body)
        await w.drain()
        return True


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")
