"""Live SSE passthrough, sans-IO: forward bytes as they arrive while watching the stream.

``Passthrough.feed(data)`` returns the bytes to forward now. Without filtering they are the
input bytes, unchanged and undelayed. With ``drop_usage`` (streamshim injected
``stream_options.include_usage`` the client did not ask for) whole events are forwarded as soon as
their blank line arrives, and a ``choices: []`` usage chunk is left out. Either way the stream is
inspected: events, ``[DONE]``, finish reasons, error events, and how it ended.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from .sse import DONE, SSEDecoder

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r|\r\n\n|\n\r\n")


class Passthrough:
    def __init__(self, drop_usage: bool = False) -> None:
        self.drop_usage = drop_usage
        self.decoder = SSEDecoder()
        self.done = False
        self.errors: list[str] = []
        self.finished_choices: set[int] = set()
        self.dropped_usage = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._held = b""

    @property
    def events(self) -> int:
        return self.decoder.events

    def feed(self, data: bytes) -> bytes:
        self.bytes_in += len(data)
        self._inspect(data)
        if not self.drop_usage:
            self.bytes_out += len(data)
            return data
        buf = self._held + data
        end = 0
        out = []
        for m in _EVENT_END.finditer(buf):
            block = buf[end : m.end()]
            end = m.end()
            if not self._is_usage_only(block):
                out.append(block)
            else:
                self.dropped_usage += 1
        self._held = buf[end:]
        result = b"".join(out)
        self.bytes_out += len(result)
        return result

    def close(self) -> bytes:
        """End of the upstream body: whatever was held back, and the final inspection."""
        for ev in self.decoder.close():
            self._event(ev.event, ev.data)
        held, self._held = self._held, b""
        if held and self.drop_usage and self._is_usage_only(held):
            self.dropped_usage += 1
            held = b""
        self.bytes_out += len(held)
        return held

    def _inspect(self, data: bytes) -> None:
        for ev in self.decoder.feed(data):
            self._event(ev.event, ev.data)

    def _event(self, name: str, data: str) -> None:
        if data == DONE:
            self.done = True
            return
        if name == "error" or data.startswith('{"error"') or '"error":{' in data or '"error": {' in data:
            try:
                obj = json.loads(data)
            except ValueError:
                obj = None
            if name == "error" or (isinstance(obj, dict) and obj.get("error")):
                self.errors.append(f"upstream error event {self.decoder.events}: {data[:200]}")
                return
        if '"finish_reason":null' in data and '"finish_reason":"' not in data:
            return  # the common case, decided without parsing
        if '"finish_reason"' in data:
            try:
                obj = json.loads(data)
            except ValueError:
                self.errors.append(f"malformed data at event {self.decoder.events}")
                return
            for choice in obj.get("choices") or () if isinstance(obj, dict) else ():
                if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                    self.finished_choices.add(choice.get("index", 0))

    @staticmethod
    def _is_usage_only(block: bytes) -> bool:
        if b'"usage"' not in block or b'"choices"' not in block:
            return False
        dec = SSEDecoder()
        events = dec.feed(block) + dec.close()
        if len(events) != 1:
            return False
        try:
            obj = json.loads(events[0].data)
        except ValueError:
            return False
        return isinstance(obj, dict) and obj.get("choices") == [] and obj.get("usage") is not None

    def complete(self) -> bool:
        return not self.errors and (self.done or bool(self.finished_choices))

    def summary(self) -> str:
        if self.errors:
            return self.errors[0]
        if self.done:
            return "ended with [DONE]"
        if self.finished_choices:
            return "ended without [DONE] (all choices finished)"
        return "ended without [DONE] or finish_reason: truncated"


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
            self._raw_deflate_ok = True
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
