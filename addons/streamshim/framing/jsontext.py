"""JSON text in and out, whatever API it carries: the one parser every input goes through and the
encoders every output goes through. Knows no API.

- ``decode_json``: ``json.loads`` that fails only with ``ValueError``, also for JSON nested deeper
  than ``MAX_JSON_DEPTH`` (where ``json.loads`` may raise ``RecursionError``, and code that walks
  the value later would).
- ``encode_json``: compact JSON, non-ASCII kept as UTF-8 (how event data is written).
- ``json_utf8``: JSON text as UTF-8 bytes; a lone surrogate (``"\\ud800"`` is valid JSON, and has
  no UTF-8 form) is written as its JSON escape.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "decode_json", "encode_json", "json_too_deep", "json_utf8"]

# JSON nested deeper than this is refused as invalid: Python's parser stops near 1000 levels with a
# RecursionError, and code that walks a parsed value (compare, pretty-print) runs out before that.
MAX_JSON_DEPTH = 256


def encode_json(obj: object) -> str:
    """Compact JSON, non-ASCII kept as UTF-8: how OpenAI and Anthropic write event data."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_utf8(text: str) -> bytes:
    """JSON text (``json.dumps(…, ensure_ascii=False)``) as UTF-8. A lone surrogate, which JSON
    allows (``"\\ud800"``) and UTF-8 cannot encode, can only be inside a JSON string: it is
    written as its JSON escape, so the bytes parse back to the same value."""
    return text.encode("utf-8", "backslashreplace")


def decode_json(text: str | bytes) -> Any:
    """``json.loads`` that fails only with ``ValueError``: also for JSON nested deeper than
    ``MAX_JSON_DEPTH`` (where ``json.loads`` itself may raise ``RecursionError``)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if json_too_deep(text, obj):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


def json_too_deep(text: str | bytes, obj: Any) -> bool:
    """Whether ``obj`` (parsed from ``text``) nests deeper than ``MAX_JSON_DEPTH``; cheap unless
    the text holds that many brackets."""
    if len(text) <= MAX_JSON_DEPTH:
        return False
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    if brackets <= MAX_JSON_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(obj, 1)] if isinstance(obj, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        items = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in items if isinstance(v, dict | list))
    return False
