"""What an LLM response means, whatever its shape, and how two meanings differ.

Sans-IO. ``meaning(status, headers, body)`` reduces a stream or JSON response to what a client
acts on: status, the dialect's ``Meaning`` (per output the content, reasoning, refusal, tool calls
with parsed arguments, finish/stop reason; usage; the error it carries) as a dict. Ids are left
out: they differ run to run. ``diff_meaning`` lists the differences between two meanings as
readable lines; ``replay`` and ``streamshim diff`` both use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from . import dialects
from .dialects.base import Dialect
from .errors import StreamError, printable
from .framing import decode_json, sniff
from .framing.encoding import decode_body

__all__ = ["compare", "decoded", "diff_meaning", "header", "is_stream", "meaning"]


def header(headers: Iterable[Iterable[str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def decoded(headers: Iterable[Iterable[str]], body: bytes) -> bytes:
    """The body without its content-encoding; ``ValueError`` naming the encoding if corrupt."""
    enc = header(headers, "content-encoding")
    if not enc:
        return body
    try:
        return decode_body(body, enc)
    except ValueError as exc:
        raise ValueError(f"undecodable {enc} body: {exc}") from None


def is_stream(headers: Iterable[Iterable[str]], body: bytes) -> bool:
    """An event stream by its label or, unlabelled (a file), by how it starts."""
    ctype = header(headers, "content-type")
    return "event-stream" in ctype or "ndjson" in ctype or sniff(body) in ("sse", "ndjson")


def meaning(
    status: int, headers: Iterable[Iterable[str]], body: bytes, api: str | Dialect | None = None
) -> dict[str, Any]:
    """What a client response means: status, shape, and the dialect's meaning of the body (the
    dialect: ``api``, else detected from the body, else chat)."""
    headers = [tuple(h) for h in headers]
    try:
        body = decoded(headers, body)
    except ValueError as exc:
        return {"status": status, "error": str(exc)}
    out: dict[str, Any] = {"status": status}
    if is_stream(headers, body):
        out["shape"] = "sse"
        dialect = dialects.resolve(api, body=body)
        assert dialect is not None
        agg = dialect.aggregator()
        agg.feed(body)
        try:
            resp: Any = agg.finish()
        except StreamError as exc:
            out["error"] = f"{exc.kind}: {exc.message}"
            resp = exc.partial or {}
    else:
        out["shape"] = "json"
        try:
            resp = decode_json(body)
        except ValueError:
            return {**out, "shape": "other", "body": body[:200].decode("utf-8", "replace")}
        dialect = dialects.resolve(api, payload=resp)
        assert dialect is not None
    if not isinstance(resp, dict):
        return {**out, "body": resp}
    found = dialect.meaning(resp).as_dict()
    if "error" in out:  # the stream's own fault comes first
        found.pop("error", None)
    return {**out, **found}


def diff_meaning(a: Any, b: Any, path: str = "", labels: tuple[str, str] = ("recorded", "now")) -> list[str]:
    """One line per difference, e.g. ``choices[0].content: recorded 'Hi', now 'Hello'``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in [*a, *(k for k in b if k not in a)]:
            out += diff_meaning(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}.{key}", labels)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in diff_meaning(x, y, f"{path}[{i}]", labels)]
    if a != b:  # the path holds the body's own keys: the line is made terminal-safe whole
        where = printable(path.lstrip(".") or "response")
        return [f"{where}: {labels[0]} {short(a)}, {labels[1]} {short(b)}"]
    return []


def compare(
    a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str] = ("A", "B")
) -> tuple[list[str], list[str]]:
    """Differences between two answers to the same question, asked once streamed and once not:
    the shape is not compared; usage only when both carry it (a stream carries it only when asked).
    Returns (differences, notes)."""
    a, b = dict(a), dict(b)
    notes = []
    a.pop("shape", None)
    b.pop("shape", None)
    if ("usage" in a) != ("usage" in b):
        notes.append(f"usage only in {labels[0] if 'usage' in a else labels[1]}: not compared")
        a.pop("usage", None)
        b.pop("usage", None)
    return diff_meaning(a, b, labels=labels), notes


def short(value: Any) -> str:
    """A value for a diff line: short, and nothing a terminal would act on."""
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return printable(text if len(text) <= 160 else text[:157] + "…")
