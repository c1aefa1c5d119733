"""Server-sent events: an incremental, spec-following decoder and the encoder. Knows no API.

Sans-IO: ``SSEDecoder.feed(bytes)`` returns the events completed by those bytes, ``close()``
returns the last one. The decoder follows the WHATWG "event stream interpretation" algorithm:
LF, CR and CRLF line ends (also when a CRLF is split across two ``feed`` calls), ``data:`` with or
without the space, multi-line data, ``event``/``id``/``retry`` fields, comment lines, a leading
BOM. Anything it had to accept but that a well-formed stream would not contain (a final event
without its blank line) is reported in ``SSEDecoder.problems``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .events import Event
from .jsontext import json_utf8

__all__ = ["SSEDecoder", "encode_event", "encode_events"]

_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Incremental event-stream decoder. Feed it bytes in any split; it never raises."""

    __slots__ = (
        "_buf",
        "_data",
        "_event_start",
        "_event_type",
        "_last_id",
        "_line_offset",
        "_retry",
        "_skip_lf",
        "_started",
        "comments",
        "events",
        "last_comment",
        "problems",
        "total_bytes",
    )

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event_type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False
        self._started = False
        self._line_offset = 0  # byte offset (after the BOM, if any) of the start of ``_buf``
        self._event_start: int | None = None
        self.events = 0
        self.comments = 0
        self.last_comment: str | None = None
        self.total_bytes = 0
        self.problems: list[str] = []

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, data: bytes) -> list[Event]:
        if not data:
            return []
        self.total_bytes += len(data)
        buf = self._buf + data if self._buf else data
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
                self._line_offset += len(_BOM)
        if self._skip_lf:
            self._skip_lf = False
            if buf[:1] == b"\n":
                buf = buf[1:]
                self._line_offset += 1
        out: list[Event] = []
        offset = self._line_offset
        if b"\r" not in buf:
            # the common framing (LF only): split without keeping ends, and handle data and blank
            # lines inline; anything else goes through _line
            lines = buf.split(b"\n")
            self._buf = lines.pop()
            data = self._data
            for line in lines:
                start = offset
                offset += len(line) + 1
                if not line:
                    if data:
                        ev = self._dispatch()
                        data = self._data
                        if ev is not None:
                            out.append(ev)
                    else:
                        self._event_start = None
                        self._event_type = ""
                elif line[:6] == b"data: ":
                    if self._event_start is None:
                        self._event_start = start
                    data.append(line[6:].decode("utf-8", "replace"))
                else:
                    ev = self._line(line, start)
                    data = self._data
                    if ev is not None:
                        out.append(ev)
            self._line_offset = offset
            return out
        lines = buf.splitlines(keepends=True)
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buf = lines.pop()
        else:
            self._buf = b""
        if lines and lines[-1].endswith(b"\r"):
            # a CR at the very end may be the first half of a CRLF split across feeds
            self._skip_lf = True
        for raw in lines:
            start = offset
            offset += len(raw)
            ev = self._line(raw[:-2] if raw.endswith(b"\r\n") else raw[:-1], start)
            if ev is not None:
                out.append(ev)
        self._line_offset = offset
        return out

    def close(self) -> list[Event]:
        """End of input: returns an event left without its terminating blank line, if any."""
        if not self._started and self._buf:
            self._started = True  # a stream shorter than a BOM
        out: list[Event] = []
        if self._buf:
            line, self._buf = self._buf, b""
            ev = self._line(line, self._line_offset)
            self._line_offset += len(line)
            if ev is not None:
                out.append(ev)
        if self._event_start is not None:
            if self._data:
                self.problems.append(
                    f"stream ended without the blank line that terminates the last event "
                    f"(byte {self._event_start})"
                )
            ev = self._dispatch()
            if ev is not None:
                out.append(ev)
        return out

    def _line(self, line: bytes, offset: int) -> Event | None:
        if not line:
            return self._dispatch()
        if line[:1] == b":":
            self.comments += 1
            self.last_comment = line[1:].decode("utf-8", "replace").strip()
            return None
        if self._event_start is None:
            self._event_start = offset
        if line.startswith(b"data:"):
            value = line[6:] if line[5:6] == b" " else line[5:]
            self._data.append(value.decode("utf-8", "replace"))
            return None
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            self._event_type = value.decode("utf-8", "replace")
        elif name == b"data":  # "data" without a colon: an empty data line
            self._data.append("")
        elif name == b"id" and b"\0" not in value:
            self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        # any other field name is ignored, as the spec says
        return None

    def _dispatch(self) -> Event | None:
        start = self._event_start
        self._event_start = None
        if not self._data:
            self._event_type = ""
            return None
        self.events += 1
        data = self._data
        ev = Event(
            data=data[0] if len(data) == 1 else "\n".join(data),
            event=self._event_type or "message",
            id=self._last_id,
            retry=self._retry,
            number=self.events,
            offset=start or 0,
        )
        self._data = []
        self._event_type = ""
        return ev


def encode_event(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One event: optional ``event:``/``id:`` lines, ``data: …`` (one per line of ``data``), a blank
    line. The default event type (``message``) is not written. A lone surrogate (only JSON data
    can hold one, from a ``"\\ud800"`` escape) is written as its JSON escape (``json_utf8``)."""
    head = ""
    if event is not None and event != "message":
        head += f"event: {event}\n"
    if id is not None:
        head += f"id: {id}\n"
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return json_utf8(head + body + "\n")


def encode_events(events: Iterable[Event]) -> bytes:
    """Encode events one after another (``event:`` lines for named ones)."""
    return b"".join(encode_event(ev.data, ev.event, ev.id) for ev in events)
