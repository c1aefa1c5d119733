"""API dialects. Each module converts one endpoint's stream ⇄ JSON and exposes:

- ``NAME``, ``OBJECT`` (the non-stream ``object``), ``CHUNK_OBJECT``, ``PATH_SUFFIX``
- ``Aggregator``: a ``base.StreamAggregator`` (SSE body → one response)
- ``synthesize_chunks(resp, include_usage=, chunk_chars=)``: one response → chunk payloads

A new dialect (Responses API, Anthropic Messages, Ollama NDJSON, …) is one more module listed in
``DIALECTS``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import chat, completions

DIALECTS: dict[str, ModuleType] = {chat.NAME: chat, completions.NAME: completions}


def get(name: str) -> ModuleType:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown API {name!r}; known: {', '.join(DIALECTS)}") from None


def for_path(path: str) -> ModuleType | None:
    """The dialect of a request path (query string ignored), or None for other endpoints."""
    path = path.split("?", 1)[0].rstrip("/")
    for mod in (chat, completions):  # the longer suffix first
        if path.endswith(mod.PATH_SUFFIX):
            return mod
    return None


def detect(payload: Any) -> ModuleType | None:
    """The dialect of a response body or chunk, from ``object`` or, failing that, its shape."""
    if not isinstance(payload, dict):
        return None
    obj = payload.get("object")
    for mod in DIALECTS.values():
        if obj in (mod.OBJECT, mod.CHUNK_OBJECT):
            return mod
    for choice in payload.get("choices") or ():
        if isinstance(choice, dict):
            if "delta" in choice or "message" in choice:
                return chat
            if "text" in choice:
                return completions
    return None
