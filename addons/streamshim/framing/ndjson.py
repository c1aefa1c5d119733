"""Newline-delimited JSON (Ollama's native streaming): one JSON document per line. Knows no API.

Sans-IO, like the SSE decoder: ``NDJSONDecoder.feed(bytes)`` returns one ``Event`` per complete
non-blank line (its text in ``data``), ``close()`` the last line when the body does not end with
a newline (accepted, and reported in ``problems``). LF and CRLF line ends; blank lines are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from .events import Event
from .jsontext import json_utf8

__all__ = ["NDJSONDecoder", "encode_events"]


class NDJSONDecoder:
    __slots__ = ("_buf", "_offset", "events", "problems", "total_bytes")

    def __init__(self) -> None:
        self._buf = b""
        self._offset = 0  # byte offset of the start of ``_buf``
        self.events = 0
        self.total_bytes = 0
        self.problems: list[str] = []

    def feed(self, data: bytes) -> list[Event]:
        if not data:
            return []
        self.total_bytes += len(data)
        buf = self._buf + data if self._buf else data
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[Event] = []
        offset = self._offset
        for line in lines:
            ev = self._line(line, offset)
            offset += len(line) + 1
            if ev is not None:
                out.append(ev)
        self._offset = offset
        return out

    def close(self) -> list[Event]:
        line, self._buf = self._buf, b""
        if not line.strip():
            return []
        self.problems.append(f"body ended without a newline after the last line (byte {self._offset})")
        ev = self._line(line, self._offset)
        self._offset += len(line)
        return [ev] if ev is not None else []

    def _line(self, line: bytes, offset: int) -> Event | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return None
        self.events += 1
        return Event(data=line.decode("utf-8", "replace"), number=self.events, offset=offset)


def encode_events(events: Iterable[Event]) -> bytes:
    """One line per event (``data`` must hold no newline: compact JSON never does; a lone
    surrogate is written as its JSON escape, ``json_utf8``)."""
    return b"".join(json_utf8(ev.data) + b"\n" for ev in events)
