"""Benchmark upstream: an OpenAI-shaped server that answers as fast as it can, or paced.

    python tests/bench/upstream.py PORT

The request's ``model`` picks the answer: ``sse:N`` (N content chunks), ``sse:N:MS`` (one chunk
every MS milliseconds), ``json:N`` (the same answer as one JSON body). Chunks are pre-encoded, so
the server costs as little as possible per chunk.
"""

from __future__ import annotations

import asyncio
import json
import sys

BASE = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench"}


def chunk(delta: dict, finish: str | None = None) -> bytes:
    obj = {**BASE, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


TOKEN = chunk({"content": "tok "})
FIRST = chunk({"role": "assistant", "content": ""})
LAST = chunk({}, "stop") + b"data: [DONE]\n\n"


def sse_body(n: int) -> bytes:
    return FIRST + TOKEN * n + LAST


def json_body(n: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "tok " * n},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1},
        }
    ).encode()


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            close = False
            for line in head.split(b"\r\n"):
                lower = line.lower()
                if lower.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif lower.startswith(b"connection:") and b"close" in lower:
                    close = True
            body = json.loads(await reader.readexactly(length)) if length else {}
            kind, _, rest = str(body.get("model", "sse:10")).partition(":")
            parts = rest.split(":")
            n = int(parts[0] or 10)
            pace = float(parts[1]) / 1000 if len(parts) > 1 else 0.0
            if kind == "json":
                data = json_body(n)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(data), data)
                )
                await writer.drain()
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            if pace:
                loop = asyncio.get_running_loop()
                start = loop.time()
                writer.write(_frame(FIRST))
                for i in range(n):
                    delay = start + (i + 1) * pace - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    writer.write(_frame(TOKEN))
                    await writer.drain()
                writer.write(_frame(LAST))
            else:
                # as fast as possible, but as separate writes of ~64 chunks, like a real server
                batch = TOKEN * 64
                writer.write(_frame(FIRST))
                for _ in range(n // 64):
                    writer.write(_frame(batch))
                    await writer.drain()
                if n % 64:
                    writer.write(_frame(TOKEN * (n % 64)))
                writer.write(_frame(LAST))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
