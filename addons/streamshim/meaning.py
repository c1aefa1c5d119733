"""What an LLM response means, whatever its shape, and how two meanings differ.

Sans-IO. ``meaning(status, headers, body)`` reduces a stream or JSON response to what a client
acts on: status, and per choice the content, reasoning, refusal, tool calls (name + parsed
arguments, ids left out: they differ run to run), finish_reason; usage; or the error it carries.
``diff_meaning`` lists the differences between two meanings as readable lines; ``replay`` and
``streamshim diff`` both use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from . import aggregate
from .errors import StreamError
from .passthrough import decode_body
from .sse import sniff


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


def is_sse(headers: Iterable[Iterable[str]], body: bytes) -> bool:
    """An event stream by its label or, unlabelled (a file), by how it starts."""
    return "event-stream" in header(headers, "content-type") or sniff(body) == "sse"


def meaning(status: int, headers: Iterable[Iterable[str]], body: bytes) -> dict[str, Any]:
    """What a client response means: status, shape, and per choice content, reasoning, tool calls
    (name + parsed arguments), finish_reason; usage; or the error it carries."""
    headers = [tuple(h) for h in headers]
    try:
        body = decoded(headers, body)
    except ValueError as exc:
        return {"status": status, "error": str(exc)}
    out: dict[str, Any] = {"status": status}
    if is_sse(headers, body):
        out["shape"] = "sse"
        try:
            resp = aggregate(body)
        except StreamError as exc:
            out["error"] = f"{exc.kind}: {exc.message}"
            resp = exc.partial or {}
    else:
        out["shape"] = "json"
        try:
            resp = json.loads(body)
        except ValueError:
            return {**out, "shape": "other", "body": body[:200].decode("utf-8", "replace")}
    if not isinstance(resp, dict):
        return {**out, "body": resp}
    if "error" in resp:
        err = resp["error"]
        out["error"] = err.get("message") if isinstance(err, dict) else err
    choices = []
    for c in resp.get("choices") or []:
        m = c.get("message") or {}
        item: dict[str, Any] = {"content": m.get("content", c.get("text"))}
        for key in ("reasoning_content", "reasoning", "refusal"):
            if m.get(key):
                item[key] = m[key]
        calls = [(tc.get("function") or {}) for tc in m.get("tool_calls") or []]
        if calls:
            item["tool_calls"] = [(fn.get("name"), _parse_args(fn.get("arguments"))) for fn in calls]
        item["finish_reason"] = c.get("finish_reason")
        choices.append(item)
    if "choices" in resp:
        out["choices"] = choices
    if resp.get("usage") is not None:
        out["usage"] = resp["usage"]
    return out


def _parse_args(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


def diff_meaning(a: Any, b: Any, path: str = "", labels: tuple[str, str] = ("recorded", "now")) -> list[str]:
    """One line per difference: ``choices[0].finish_reason: recorded 'stop', now 'length'``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in [*a, *(k for k in b if k not in a)]:
            out += diff_meaning(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}.{key}", labels)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in diff_meaning(x, y, f"{path}[{i}]", labels)]
    if a != b:
        return [f"{path.lstrip('.') or 'response'}: {labels[0]} {_short(a)}, {labels[1]} {_short(b)}"]
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


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 160 else text[:157] + "…"
