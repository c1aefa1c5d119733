"""What every framing produces: ``Event`` objects, from a ``Decoder``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Event:
    """One dispatched event. ``number`` counts from 1; ``offset`` is the byte where it began.
    ``event`` is the SSE event type (``message`` when unnamed, and for every NDJSON line)."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None
    number: int = 0
    offset: int = 0

    def where(self) -> str:
        return f"event {self.number} (byte {self.offset})"


class Decoder(Protocol):
    """An incremental decoder: bytes in any split in, events out. It never raises."""

    events: int  # events dispatched so far
    total_bytes: int
    problems: list[str]  # what it accepted but a well-formed body would not contain

    def feed(self, data: bytes) -> list[Event]: ...

    def close(self) -> list[Event]: ...
