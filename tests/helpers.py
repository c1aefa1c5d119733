"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any

from streamshim.dialects.openai import encode_chunks as encode_data


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    base.update(top)
    base["choices"] = list(choices)
    return base


def delta(index: int = 0, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish_reason}


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    return encode_data(chunks, done=done)


def completion(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A non-stream chat.completion with these choices."""
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": list(choices),
        **top,
    }
