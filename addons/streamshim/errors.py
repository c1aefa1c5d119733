"""Typed errors of the core. Each names what went wrong and where, and carries what was
aggregated before it went wrong, so that nothing received is lost."""

from __future__ import annotations

from typing import Any


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: every character ``str.isprintable`` rejects (control
    characters and so escape sequences, bidi overrides, lone surrogates, unassigned code points)
    is written as its Python escape (``\\x1b``, ``\\u202e``); everything else is kept as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class StreamShimError(Exception):
    """Base class of every error the core raises on purpose."""


class StreamError(StreamShimError):
    """An upstream stream that cannot be turned into a successful answer.

    ``kind`` is one of ``upstream_error`` (the upstream's own error event or payload),
    ``malformed`` (an event that is not a JSON object of the expected shape), ``truncated`` (the
    stream ended before its answer was complete) and ``not_sse`` (no event at all). The error
    body a JSON client gets is the dialect's (``Dialect.error_body``).
    ``partial`` is the response aggregated from everything before the fault (``None`` when
    nothing arrived); ``upstream_error`` holds the upstream's own error object, if it sent one.
    """

    kind = "stream_error"

    def __init__(
        self,
        message: str,
        *,
        event_number: int | None = None,
        byte_offset: int | None = None,
        partial: dict[str, Any] | None = None,
        upstream_error: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.event_number = event_number
        self.byte_offset = byte_offset
        self.partial = partial
        self.upstream_error = upstream_error

    def where(self) -> str:
        if self.event_number is None:
            return f"byte {self.byte_offset}" if self.byte_offset is not None else "end of stream"
        return f"event {self.event_number} (byte {self.byte_offset})"

    def describe(self) -> str:
        """One line for a client or a log: what happened and where."""
        return f"upstream stream failed at {self.where()}: {self.message}"


class UpstreamErrorEvent(StreamError):
    kind = "upstream_error"


class MalformedEvent(StreamError):
    kind = "malformed"


class TruncatedStream(StreamError):
    kind = "truncated"


class NotAStream(StreamError):
    kind = "not_sse"


class BadRecording(StreamShimError, ValueError):
    """A flow file that mitmproxy cannot read, or a flow whose ``metadata["streamshim"]`` is not
    what the addon writes (a damaged or hand-edited file). The message names what is wrong."""


class BadResponse(StreamShimError):
    """A JSON body that is not a response this dialect can re-emit as a stream."""
