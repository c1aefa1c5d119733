"""Live passthrough of a stream, sans-IO: forward bytes as they arrive while watching the stream.

``Passthrough.feed(data)`` returns the bytes to forward now. Without filtering they are the input
bytes, unchanged and undelayed. With ``drop_usage`` (streamshim asked the upstream for a usage
record the client did not ask for) whole events are forwarded as soon as their end arrives, and
the dialect takes its injected usage out of them (``Dialect.strip_injected_usage``: an event left
with nothing else is dropped, one that carries more is forwarded without the usage).

The watch never parses on the hot path: it counts event ends, looks for the dialect's terminal
record at the end of each chunk and for its error markers (``Dialect.watch``); only a suspected
error is looked at closer. When a stream did not end with its terminal record, ``settle``
aggregates what was forwarded, once, to tell a complete answer from a cut one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .dialects.base import Asked, Dialect, loads
from .errors import StreamError
from .framing import encode_json


class Passthrough:
    """Forward a stream as it arrives, watching it at byte level."""

    _TAIL = 32  # bytes kept from the previous chunk, so a marker split across chunks is seen
    _END = 64  # bytes at the end of a chunk where the terminal record is looked for

    def __init__(self, dialect: Dialect, drop_usage: bool = False, asked: Asked | None = None) -> None:
        self.dialect = dialect
        self.asked = asked
        self.drop_usage = drop_usage
        self.events = 0
        self.done = False  # the terminal record arrived
        self.errors: list[str] = []
        self.usage_removed = 0  # events whose injected usage was taken out (dropped or rewritten)
        self.bytes_in = 0
        self.bytes_out = 0
        self.verdict: StreamError | None = None  # ``settle``'s finding for a stream without terminal
        self._tail = b""
        self._held = b""
        watch = dialect.watch
        self._terminal = watch.terminal
        self._error_markers = watch.errors
        self._not_errors = watch.not_errors
        # one scan per chunk finds every error marker when they share a word ("error")
        self._error_hint = b"error" if all(b"error" in m for m in watch.errors) else None
        self._ends = dialect.framing.event_ends
        self._event_end = re.compile(b"|".join(re.escape(e) for e in _all_ends(self._ends)))

    def feed(self, data: bytes) -> bytes:
        self.bytes_in += len(data)
        self._watch(data)
        if not self.drop_usage:
            self.bytes_out += len(data)
            return data
        buf = self._held + data
        end = 0
        out = []
        for m in self._event_end.finditer(buf):
            out.append(self._without_usage(buf[end : m.end()]))
            end = m.end()
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
        if b'"usage"' not in block:
            return block
        dec = self.dialect.framing.decoder()
        events = dec.feed(block) + dec.close()
        if len(events) != 1:
            return block
        try:
            obj = loads(events[0].data)
        except ValueError:
            return block
        if not isinstance(obj, dict):
            return block
        rest = self.dialect.strip_injected_usage(obj)
        if rest is None:
            return block
        self.usage_removed += 1
        if not rest:
            return b""
        ev = events[0]
        ev.data = encode_json(rest)
        return self.dialect.framing.encode([ev])

    def _watch(self, data: bytes) -> None:
        # Per chunk, one scan per event-end marker and one for the error markers, of the chunk
        # itself and the small seam with the previous chunk; no copy of the chunk. The terminal
        # record is looked for where it normally is, at the end of a chunk; ``settle`` judges a
        # stream that did not end that way.
        tail = self._tail
        head = data[: self._TAIL]
        seam = tail + head
        first, *others = self._ends
        self.events += data.count(first) + seam.count(first) - tail.count(first) - head.count(first)
        if others and (b"\r" in data or b"\r" in tail):  # CR line ends: rare, counted only then
            for end in others:
                self.events += data.count(end) + seam.count(end) - tail.count(end) - head.count(end)
        hint = self._error_hint
        if hint is not None:
            if hint in data or hint in seam:  # one scan; the markers are told apart only then
                self._suspect(tail + data, len(tail))
        elif any(m in data or m in seam for m in self._error_markers):
            self._suspect(tail + data, len(tail))
        self._tail = data[-self._TAIL :] if len(data) >= self._TAIL else (tail + data)[-self._TAIL :]
        if not self.done:
            end_bytes = self._tail if len(data) < self._END else data[-self._END :]
            self.done = any(m in end_bytes or m in seam for m in self._terminal)

    def settle(self, forwarded: Callable[[], bytes]) -> None:
        """End of the stream: when its terminal record was not seen at a chunk's end, aggregate
        what was forwarded (a rare path: a cut or unusual stream) to judge it."""
        if self.done or self.errors:
            return
        body = forwarded()
        self.done = any(m in body for m in self._terminal)
        if self.done:
            return
        agg = self.dialect.aggregator(self.asked)
        agg.feed(body)
        try:
            agg.finish()
        except StreamError as exc:
            self.verdict = exc

    def _suspect(self, window: bytes, fresh_from: int) -> None:
        for marker in self._error_markers:
            pos = window.find(marker, max(0, fresh_from - len(marker) + 1))
            if pos < 0:
                continue
            after = window[pos + len(marker) : pos + len(marker) + 6].replace(b" ", b"")
            if after.startswith(self._not_errors):
                continue
            snippet = window[pos : pos + 200].split(b"\n\n", 1)[0].decode("utf-8", "replace")
            self.errors.append(f"upstream error near event {self.events}: {snippet}")
            return

    def complete(self) -> bool:
        return not self.errors and self.verdict is None

    def summary(self) -> str:
        terminal = self.dialect.terminal_name
        if self.errors:
            return self.errors[0]
        if self.done:
            return f"ended with {terminal}"
        if self.verdict is None:
            return f"ended without {terminal} (the answer is complete)"
        return f"ended without {terminal}: {self.verdict.kind}: {self.verdict.message}"


def _all_ends(ends: tuple[bytes, ...]) -> list[bytes]:
    """Event-end patterns for re-framing, longest first (mixed line ends included)."""
    extra = [b"\r\n\n", b"\n\r\n"] if b"\n\n" in ends else []
    return sorted({*ends, *extra}, key=len, reverse=True)
