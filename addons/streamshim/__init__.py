"""streamshim: OpenAI-compatible streams ⇄ JSON, as a sans-IO core and a mitmproxy addon.

The core never touches sockets or mitmproxy:

- ``sse``: the event-stream decoder and encoder
- ``dialects``: one module per API (``chat``, ``completions``) with ``Aggregator`` and
  ``synthesize_chunks``
- ``aggregate(body)`` / ``synthesize(response)``: the two conversions in one call
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from . import dialects
from .dialects.base import DEFAULT_CHUNK_CHARS, StreamAggregator
from .errors import BadResponse, StreamError, StreamShimError
from .sse import SSEDecoder, encode_data

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "BadResponse",
    "StreamAggregator",
    "StreamError",
    "StreamShimError",
    "aggregate",
    "aggregate_with_problems",
    "aggregator_for",
    "detect_stream_dialect",
    "synthesize",
]


def detect_stream_dialect(body: bytes) -> ModuleType | None:
    """The dialect of an SSE body, from its first JSON chunk."""
    dec = SSEDecoder()
    for ev in [*dec.feed(body), *dec.close()]:
        try:
            payload = json.loads(ev.data)
        except ValueError:
            continue
        found = dialects.detect(payload)
        if found is not None:
            return found
    return None


def aggregator_for(api: str | ModuleType) -> StreamAggregator:
    mod = dialects.get(api) if isinstance(api, str) else api
    agg: StreamAggregator = mod.Aggregator()
    return agg


def aggregate(body: bytes, api: str | ModuleType | None = None) -> dict[str, Any]:
    """One SSE body → the non-stream response. Raises ``StreamError`` (with ``.partial``)."""
    return aggregate_with_problems(body, api)[0]


def aggregate_with_problems(
    body: bytes, api: str | ModuleType | None = None
) -> tuple[dict[str, Any], list[str]]:
    """``aggregate``, plus what was accepted but not well-formed (e.g. a missing final blank line)."""
    if api is None:
        api = detect_stream_dialect(body) or dialects.chat
    agg = aggregator_for(api)
    agg.feed(body)
    return agg.finish(), agg.problems


def synthesize(
    response: dict[str, Any],
    api: str | ModuleType | None = None,
    *,
    include_usage: bool = False,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
) -> bytes:
    """One non-stream response → an SSE body ending in ``data: [DONE]``. Raises ``BadResponse``."""
    if api is None:
        api = dialects.detect(response) or dialects.chat
    mod = dialects.get(api) if isinstance(api, str) else api
    try:
        return encode_data(
            mod.synthesize_chunks(response, include_usage=include_usage, chunk_chars=chunk_chars)
        )
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise BadResponse(f"response has a field of an unexpected type: {exc}") from None
