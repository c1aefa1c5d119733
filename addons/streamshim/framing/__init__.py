"""Framing: how a body is cut into events, whatever API it carries. Knows no API.

- ``sse``: server-sent events (``event:``/``id:``/``data:`` lines, blank-line terminated), the
  framing of OpenAI, Anthropic and most LLM APIs.
- ``ndjson``: one JSON document per line (Ollama's native API).
- ``encoding``: ``content-encoding`` (gzip, deflate, br, zstd), incremental and strict.
- ``sniff(body)``: what a body is from its first bytes: ``sse``, ``ndjson``, ``json``, ``empty``
  or ``other``.
- ``jsontext``: JSON text in and out (``decode_json``, ``encode_json``, ``json_utf8``): every input
  JSON is parsed with ``decode_json`` (only ``ValueError``, also for nesting deeper than
  ``MAX_JSON_DEPTH``), every output JSON encoded so that a lone surrogate survives.

A framing is chosen by name (``FRAMINGS``): each gives a decoder (``feed(bytes) -> [Event]``,
``close() -> [Event]``, ``events``, ``total_bytes``, ``problems``), an encoder of events, its
media type and the bytes that end an event on the wire (for the live repair and the passthrough judgement).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import ndjson, sse
from .events import Decoder, Event
from .jsontext import MAX_JSON_DEPTH, decode_json, encode_json, json_too_deep, json_utf8

__all__ = [
    "FRAMINGS",
    "MAX_JSON_DEPTH",
    "Decoder",
    "Event",
    "Framing",
    "decode_json",
    "encode_json",
    "framing",
    "json_too_deep",
    "json_utf8",
    "sniff",
]


@dataclass(frozen=True)
class Framing:
    name: str
    media_type: str
    decoder: Callable[[], Decoder]
    encode: Callable[[Iterable[Event]], bytes]
    # what ends one event on the wire (live repair splits on these; the judgement finds the last one)
    event_ends: tuple[bytes, ...]


def sniff(body: bytes) -> str:
    """What a body is, from its first bytes, whatever its label: ``"sse"``, ``"ndjson"`` (two or
    more lines that are each a JSON object), ``"json"``, ``"empty"`` or ``"other"``."""
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return "empty"
    if head.startswith(b"{"):
        return "ndjson" if _ndjson(body.lstrip(b"\xef\xbb\xbf \t\r\n")) else "json"
    if head.startswith(b"["):
        return "json"
    if head.startswith((b"data:", b":", b"event:", b"id:", b"retry:")):
        return "sse"
    return "other"


def _ndjson(body: bytes) -> bool:
    """The first line is a whole JSON object and another object starts on the next line (a
    pretty-printed JSON body's first line, ``{``, is not a whole object)."""
    end = body.find(b"\n")
    if end < 0 or not body[end + 1 :].lstrip(b" \t\r\n").startswith(b"{"):
        return False
    try:
        return isinstance(decode_json(body[:end]), dict)
    except ValueError:
        return False


def _framings() -> dict[str, Framing]:
    return {
        "sse": Framing(
            "sse", "text/event-stream", sse.SSEDecoder, sse.encode_events, (b"\n\n", b"\r\n\r\n", b"\r\r")
        ),
        "ndjson": Framing(
            "ndjson", "application/x-ndjson", ndjson.NDJSONDecoder, ndjson.encode_events, (b"\n",)
        ),
    }


FRAMINGS: dict[str, Framing] = _framings()


def framing(name: str) -> Framing:
    try:
        return FRAMINGS[name]
    except KeyError:
        raise ValueError(f"unknown framing {name!r}; known: {', '.join(FRAMINGS)}") from None
