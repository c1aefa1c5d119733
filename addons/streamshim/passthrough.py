"""Live SSE passthrough, sans-IO: forward bytes as they arrive while watching the stream.

``Passthrough.feed(data)`` returns the bytes to forward now. Without filtering they are the
input bytes, unchanged and undelayed. With ``drop_usage`` (streamshim injected
``stream_options.include_usage`` the client did not ask for) whole events are forwarded as soon as
their blank line arrives, and the ``usage`` of a ``choices: []`` usage chunk is taken out: the
chunk is left out when nothing else is in it, and forwarded without ``usage`` when it carries more
(llama-server moves its ``timings`` onto that chunk). Either way the stream is inspected: events,
``[DONE]``, finish reasons, error events, and how it ended.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from typing import Any

from .sse import SSEDecoder, encode_event, encode_json

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r|\r\n\n|\n\r\n")


class Passthrough:
    """Forward an SSE body as it arrives, watching it at byte level (no parsing on the hot path).

    The watch counts events (blank lines) and notices ``[DONE]``, a non-null ``finish_reason``
    and error events or payloads; only a suspected error is parsed, to confirm and describe it.
    """

    _TAIL = 32  # bytes kept from the previous chunk, so a marker split across chunks is seen
    _END = 64  # bytes at the end of a chunk where [DONE] is looked for

    def __init__(self, drop_usage: bool = False) -> None:
        self.drop_usage = drop_usage
        self.events = 0
        self.done = False
        self.saw_finish = False
        self.errors: list[str] = []
        self.usage_removed = 0  # usage chunks whose usage was taken out (dropped or rewritten)
        self.bytes_in = 0
        self.bytes_out = 0
        self._tail = b""
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        self.bytes_in += len(data)
        self._watch(data)
        if not self.drop_usage:
            self.bytes_out += len(data)
            return data
        buf = self._held + data
        end = 0
        out = []
        for m in _EVENT_END.finditer(buf):
            block = buf[end : m.end()]
            end = m.end()
            out.append(self._without_usage(block))
        self._held = buf[end:]
        result = b"".join(out)
        self.bytes_out += len(result)
        return result

    def close(self) -> bytes:
        """End of the upstream body: whatever was held back."""
        held, self._held = self._held, b""
        if held:
            held = self._without_usage(held)
        self.bytes_out += len(held)
        return held

    def _without_usage(self, block: bytes) -> bytes:
        replaced = _strip_usage(block)
        if replaced is None:
            return block
        self.usage_removed += 1
        return replaced

    def _watch(self, data: bytes) -> None:
        # Per chunk, two scans of the chunk itself (event ends, "error") and small ones of the
        # seam with the previous chunk and of the chunk's end; no copy of the chunk. [DONE] is
        # looked for where it normally is, at the end of a chunk; ``settle`` looks everywhere,
        # once, only when the stream did not end that way.
        tail = self._tail
        head = data[: self._TAIL]
        seam = tail + head
        self.events += data.count(b"\n\n") + seam.count(b"\n\n") - tail.count(b"\n\n") - head.count(b"\n\n")
        if b"\r" in data or b"\r" in tail:
            crlf = b"\r\n\r\n"
            self.events += data.count(crlf) + seam.count(crlf) - tail.count(crlf) - head.count(crlf)
        if b"error" in data or b"error" in seam:  # one scan; the markers are told apart only then
            self._suspect(tail + data, len(tail))
        self._tail = data[-self._TAIL :] if len(data) >= self._TAIL else (tail + data)[-self._TAIL :]
        if not self.done:
            end = self._tail if len(data) < self._END else data[-self._END :]
            if b"[DONE]" in end or b"[DONE]" in seam:
                self.done = any(m in end or m in seam for m in (b"data: [DONE]", b"data:[DONE]"))

    def settle(self, forwarded: Callable[[], bytes]) -> None:
        """End of the stream: when no [DONE] was seen at a chunk's end, look for it, and for a
        finish_reason, in everything that was forwarded (a rare path: a cut or unusual stream)."""
        if self.done:
            return
        body = forwarded()
        self.done = b"data: [DONE]" in body or b"data:[DONE]" in body
        self.saw_finish = b'"finish_reason":"' in body or b'"finish_reason": "' in body

    def _suspect(self, window: bytes, fresh_from: int) -> None:
        for marker in (b'"error"', b"event: error", b"event:error"):
            pos = window.find(marker, max(0, fresh_from - len(marker) + 1))
            if pos < 0:
                continue
            after = window[pos + len(marker) : pos + len(marker) + 6].replace(b" ", b"")
            if marker == b'"error"' and after.startswith((b":null", b":{}", b":false")):
                continue
            snippet = window[pos : pos + 200].split(b"\n\n", 1)[0].decode("utf-8", "replace")
            self.errors.append(f"upstream error near event {self.events}: {snippet}")
            return

    def complete(self) -> bool:
        return not self.errors and (self.done or self.saw_finish)

    def summary(self) -> str:
        if self.errors:
            return self.errors[0]
        if self.done:
            return "ended with [DONE]"
        if self.saw_finish:
            return "ended without [DONE] (a finish_reason arrived)"
        return "ended without [DONE] or finish_reason: truncated"


# Fields of a chunk that say nothing by themselves: a usage chunk without its usage and with only
# these left is dropped whole.
_CHUNK_FRAME = frozenset(
    {"id", "object", "created", "model", "system_fingerprint", "service_tier", "choices"}
)


def _strip_usage(block: bytes) -> bytes | None:
    """For a ``choices: []`` chunk carrying usage (what ``include_usage`` adds at the end): the
    block without its ``usage`` (``b""`` when nothing else is left). ``None`` for any other block."""
    if b'"usage"' not in block or (b'"choices":[]' not in block and b'"choices": []' not in block):
        return None
    dec = SSEDecoder()
    events = dec.feed(block) + dec.close()
    if len(events) != 1:
        return None
    try:
        obj = json.loads(events[0].data)
    except ValueError:
        return None
    if not (isinstance(obj, dict) and obj.get("choices") == [] and obj.get("usage") is not None):
        return None
    del obj["usage"]
    if obj.keys() <= _CHUNK_FRAME:
        return b""
    return encode_event(encode_json(obj))


class StreamDecoder:
    """Incremental, strict ``content-encoding`` decoder: ``feed`` bytes, then ``close()``, which
    raises ``ValueError`` when the compressed stream is cut short or corrupt."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding = encoding.strip().lower()
        self._zlib: Any = None
        self._other: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding == "br":
            import brotli  # a mitmproxy dependency

            self._other = brotli.Decompressor()
        elif encoding == "zstd":
            import zstandard  # a mitmproxy dependency

            self._other = zstandard.ZstdDecompressor().decompressobj()
        elif encoding not in ("", "identity"):
            raise ValueError(f"unknown content-encoding {encoding!r}")
        self._started = False

    def feed(self, data: bytes) -> bytes:
        try:
            if self._zlib is not None:
                if not self._started and self.encoding == "deflate":
                    self._started = True
                    try:
                        return bytes(self._zlib.decompress(data))
                    except zlib.error:  # "deflate" sent without its zlib header
                        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return bytes(self._zlib.decompress(data))
            if self._other is not None:
                process = getattr(self._other, "process", None) or self._other.decompress
                return bytes(process(data))
        except Exception as exc:
            raise ValueError(f"corrupt {self.encoding} data: {exc}") from None
        return data

    def close(self) -> bytes:
        if self._zlib is not None:
            out = bytes(self._zlib.flush())
            if not self._zlib.eof:
                raise ValueError(f"{self.encoding} data cut short (no end-of-stream marker)")
            if self._zlib.unused_data.strip(b"\0"):
                raise ValueError(
                    f"{len(self._zlib.unused_data)} bytes of garbage after the {self.encoding} data"
                )
            return out
        if self._other is not None and hasattr(self._other, "is_finished") and not self._other.is_finished():
            raise ValueError(f"{self.encoding} data cut short")
        return b""


def decode_body(raw: bytes, encoding: str) -> bytes:
    """A whole body, strictly decoded (``ValueError`` names what is wrong)."""
    dec = StreamDecoder(encoding)
    return dec.feed(raw) + dec.close()
