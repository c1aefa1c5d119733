"""streamshim: LLM API streams ⇄ JSON bodies, as a sans-IO core and a mitmproxy addon.

The core never touches sockets or mitmproxy (it imports with mitmproxy not installed):

- ``framing``: how bodies are cut into events (SSE, NDJSON) and content-encoding; knows no API
- ``dialects``: one module per API behind one interface (``dialects.base.Dialect``), and
  ``dialects.resolve``, the one way to tell which applies
- ``check``, ``meaning``, ``view``: conformance, what a response means (and how two differ),
  a readable rendering; each asks the dialect
- ``aggregate(body)`` / ``synthesize(response)``: the two conversions in one call

The mitmproxy layer is ``streamshim.mitm``.
"""

from __future__ import annotations

from typing import Any

from . import dialects
from .dialects.base import DEFAULT_CHUNK_CHARS, Aggregator, Asked, Dialect
from .errors import BadResponse, StreamError, StreamShimError

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "Aggregator",
    "BadResponse",
    "Dialect",
    "StreamError",
    "StreamShimError",
    "aggregate",
    "aggregate_with_problems",
    "aggregator_for",
    "synthesize",
]


def aggregator_for(api: str | Dialect) -> Aggregator:
    return dialects.get(api).aggregator()


def aggregate(body: bytes, api: str | Dialect | None = None, *, n: int | None = None) -> dict[str, Any]:
    """One stream body → the non-stream response. Raises ``StreamError`` (with ``.partial``).
    ``api``: the dialect's name; default: detected from the stream, else chat. ``n``: the number
    of choices the request asked for, when known (fewer, and no end-of-stream record: a cut)."""
    return aggregate_with_problems(body, api, n=n)[0]


def aggregate_with_problems(
    body: bytes, api: str | Dialect | None = None, *, n: int | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``aggregate``, plus what was accepted but not well-formed (e.g. a missing final blank line)."""
    dialect = dialects.resolve(api, body=body)
    assert dialect is not None
    agg = dialect.aggregator(Asked(stream=True, n=n))
    agg.feed(body)
    return agg.finish(), agg.problems


def synthesize(
    response: Any,
    api: str | Dialect | None = None,
    *,
    usage: bool = False,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
) -> bytes:
    """One non-stream response → the stream body (terminator included). ``usage``: end with the
    usage record a client asks for in a stream (chat's ``stream_options``). Raises
    ``BadResponse``."""
    dialect = dialects.resolve(api, payload=response)
    assert dialect is not None
    try:
        events = dialect.synthesize(response, usage=usage, chunk_chars=chunk_chars)
        return dialect.framing.encode(events)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise BadResponse(f"response has a field of an unexpected type: {exc}") from None
