"""Passthrough of a stream, sans-IO: what happens to its bytes on the way, and what it was.

Two parts, so that the bytes of a stream that needs no rewriting are touched by nothing:

- ``EventFilter``: for a stream that must be rewritten on the way (streamshim asked the upstream
  for a usage record the client did not ask for, or the rule asks for ``repair``). It re-frames
  the bytes into whole events and forwards each as soon as its end arrives: the original bytes
  when the event needs no change, the dialect's ``Repairer``'s rewrite otherwise.
- ``judge(stream)``: what a passthrough stream was, once, by how it ended (the mitmproxy layer
  calls it from the ``response``/``error`` hooks): whether its last event is the dialect's
  terminal record, the error records among its last events (``Dialect.watch``), and, only when
  it did not end with its terminal record, the dialect's own aggregation of it to tell a
  complete answer from a cut one. Nothing is done per byte of a stream that ended well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .dialects.base import Asked, Dialect, Repairer
from .errors import StreamError, printable

__all__ = ["WHOLE_BYTES", "EventFilter", "Judgement", "Kept", "ended_with_terminal", "error_records", "judge"]


class EventFilter:
    """Forward a stream event by event through the dialect's ``Repairer``: each event leaves as
    soon as its end arrives, as its original bytes unless the repairer rewrites it."""

    def __init__(self, dialect: Dialect, repairer: Repairer) -> None:
        self.repairer = repairer
        self._held = b""
        ends = dialect.framing.event_ends
        self._event_end = re.compile(b"|".join(re.escape(e) for e in _all_ends(ends)))
        # without CRs in the buffer, the one LF-only event end splits it (faster than the regex)
        self._split = ends[0] if b"\r" not in ends[0] else None

    def feed(self, data: bytes) -> bytes:
        """The bytes to forward now: every event whose end has arrived."""
        buf = self._held + data if self._held else data
        event = self.repairer.event
        if self._split is not None and b"\r" not in buf:  # the common framing: one kind of event end
            parts = buf.split(self._split)
            self._held = parts.pop()
            return b"".join([event(p + self._split) for p in parts])
        end = 0
        out = []
        for m in self._event_end.finditer(buf):
            out.append(event(buf[end : m.end()]))
            end = m.end()
        self._held = buf[end:]
        return b"".join(out)

    def close(self, clean: bool = True) -> bytes:
        """End of the upstream body (``clean``: it ended normally): what was held back, and what
        the repairer appends."""
        held, self._held = self._held, b""
        return (self.repairer.event(held) if held else b"") + self.repairer.end(clean)


# How much of a stream's end the judgement reads (and always the whole last event): where a
# stream ends with its terminal record, and where servers put the error they end a stream with
# (vLLM: an error payload, then its end-of-stream record). An error earlier in a stream that ends well
# is left to the conformance check (in mitmweb, `streamshim check`), which reads every event.
TAIL_BYTES = 64 * 1024
# How much of a stream is kept whole when nothing reads its body afterwards (plain mitmdump): past
# this only its end (``Kept``), so that a long stream does not hold its whole body in memory. Only
# the judgement of a long stream that did not end with its terminal record needs more.
WHOLE_BYTES = 4 * 1024 * 1024


class Kept:
    """The chunks of a stream as they pass: all of them, or, with a ``limit``, all of them up to
    ``limit`` bytes and past it only the last ``TAIL_BYTES`` or more (what ``judge`` reads of a
    stream that ended well). ``total``: the bytes seen; ``held``: the bytes in ``chunks``."""

    __slots__ = ("chunks", "held", "limit", "total")

    def __init__(self, limit: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.total = 0
        self.held = 0
        self.limit = limit

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.total += len(data)
        self.held += len(data)
        if self.limit is not None and self.held > self.limit:
            self.trim()

    def trim(self) -> None:
        """Let go of all but the last ``TAIL_BYTES`` or more (never the last chunk)."""
        chunks, held, drop = self.chunks, self.held, 0
        while drop < len(chunks) - 1 and held - len(chunks[drop]) >= TAIL_BYTES:
            held -= len(chunks[drop])
            drop += 1
        del chunks[:drop]
        self.held = held
        self.limit = 2 * TAIL_BYTES  # from now on trimmed whenever twice the tail is held

    @property
    def whole(self) -> bool:
        return self.held == self.total


@dataclass
class Judgement:
    """What a passthrough stream was."""

    terminal_name: str
    bytes: int = 0
    done: bool = False  # it ended with the dialect's terminal record
    errors: list[str] = field(default_factory=list)  # error records near its end
    cut: StreamError | None = None  # its aggregation's fault, when it did not end with the terminal
    kept: int | None = None  # bytes of its end that were kept, when not the whole stream

    def complete(self) -> bool:
        # a stream not kept whole that did not end with its terminal record cannot be shown
        # complete: it is not taken for a success
        return not self.errors and self.cut is None and (self.done or self.kept is None)

    def summary(self) -> str:
        if self.errors:
            return self.errors[0]
        if self.done:
            return f"ended with {self.terminal_name}"
        if self.kept is not None:
            return (
                f"ended without {self.terminal_name}; whether it was cut is not known: only its last "
                f"{self.kept} B were kept (a stream over {WHOLE_BYTES >> 20} MiB that nothing else reads; "
                "-w, mitmweb or --flow-detail 3 keep it whole)"
            )
        if self.cut is None:
            return f"ended without {self.terminal_name} (the answer is complete)"
        return f"ended without {self.terminal_name}: {self.cut.kind}: {self.cut.message}"


def judge(stream: bytes | Sequence[bytes] | Kept, dialect: Dialect, asked: Asked | None = None) -> Judgement:
    """Judge a passthrough stream (as the client got it, content-encoding undone; the bytes, the
    chunks they came in, or what ``Kept`` kept of them) by how it ended: whether its last event is
    the dialect's terminal record, and the error records among its last events (``TAIL_BYTES``).
    Nothing else of it is read, unless it did not end with its terminal record: then the
    dialect's own aggregation of the whole stream tells a complete answer from a cut one (a rare
    path; when only its end was kept, that is said and the stream is not taken as complete)."""
    if isinstance(stream, Kept):
        parts: Sequence[bytes] = stream.chunks
        out = Judgement(dialect.terminal_name, bytes=stream.total)
        if not stream.whole:
            out.kept = stream.held
    else:
        parts = [stream] if isinstance(stream, bytes) else stream
        out = Judgement(dialect.terminal_name, bytes=sum(map(len, parts)))
    tail = _tail(parts, dialect.framing.event_ends[0])
    out.done = ended_with_terminal(tail, dialect)
    out.errors = error_records(tail, dialect, out.bytes - len(tail))
    if not out.done and not out.errors and out.kept is None:
        agg = dialect.aggregator(asked)
        for part in parts:
            agg.feed(part)
        try:
            agg.finish()
        except StreamError as exc:
            out.cut = exc
    return out


def _tail(parts: Sequence[bytes], end: bytes) -> bytes:
    """The end of a stream: at least ``TAIL_BYTES`` of it, and its last event whole."""
    taken: list[bytes] = []
    size = 0
    for part in reversed(parts):
        taken.append(part)
        size += len(part)
        if size >= TAIL_BYTES:
            tail = b"".join(reversed(taken))
            if tail.rfind(end, 0, len(tail.rstrip(b"\r\n"))) >= 0:  # the last event starts in it
                return tail
    return b"".join(reversed(taken))


def ended_with_terminal(body: bytes, dialect: Dialect) -> bool:
    """Whether the stream's last event is the dialect's terminal record. Only the last event is
    read: the search runs back from the end of the body."""
    ends = dialect.framing.event_ends
    end = len(body)
    while end and body[end - 1] in b"\r\n":
        end -= 1
    start = body.rfind(ends[0], 0, end)
    last = body[start + len(ends[0]) if start >= 0 else 0 : end]
    for other in ends[1:]:  # CR line ends: only looked for inside that last event
        cut = last.rfind(other)
        if cut >= 0:
            last = last[cut + len(other) :]
    return any(m in last for m in dialect.watch.terminal)


def error_records(body: bytes, dialect: Dialect, offset: int = 0) -> list[str]:
    """The first error record in ``body`` (by the dialect's markers), as one line; ``offset``:
    where ``body`` starts in the stream."""
    watch = dialect.watch
    # one scan rules them all out when they share a word (OpenAI's all say "error")
    if all(b"error" in m for m in watch.errors) and b"error" not in body:
        return []
    first: tuple[int, str] | None = None
    for marker in watch.errors:
        pos = body.find(marker)
        while pos >= 0 and (first is None or pos < first[0]):
            after = body[pos + len(marker) : pos + len(marker) + 8].replace(b" ", b"")
            if not after.startswith(watch.not_errors):
                first = (pos, _describe(body, pos, dialect, offset))
                break
            pos = body.find(marker, pos + 1)
    return [first[1]] if first else []


def _describe(body: bytes, pos: int, dialect: Dialect, offset: int) -> str:
    ends = dialect.framing.event_ends
    starts = [body.rfind(e, 0, pos) for e in ends]
    event_start = max((p + len(e) for p, e in zip(starts, ends, strict=True) if p >= 0), default=0)
    text = body[event_start : event_start + 200].split(ends[0], 1)[0].decode("utf-8", "replace")
    return f"upstream error at byte {offset + event_start}: {printable(text.strip())}"


def _all_ends(ends: tuple[bytes, ...]) -> list[bytes]:
    """Event-end patterns for re-framing, longest first (mixed line ends included)."""
    extra = [b"\r\n\n", b"\n\r\n"] if b"\n\n" in ends else []
    return sorted({*ends, *extra}, key=len, reverse=True)
