"""A readable rendering of an LLM stream: what the client assembles from it, not the raw chunks.

Mitmproxy-free. ``render_lines(body)`` returns lines of ``(style, text)`` pieces, ``render(body)``
the same as plain text; ``contentview.py`` adapts them to mitmproxy's content view APIs. The
layout, for an SSE body (chat completions or legacy completions) or a non-stream JSON body::

    LLM stream · chat · 20 events · finish_reason: tool_calls
    model: tiny · id: chatcmpl-…
    reasoning:
      …
    content:
      …
    tool calls:
      [0] get_weather (id call_1)
          {
            "city": "Paris"
          }
    finish_reason: tool_calls
    usage: prompt_tokens 5 · completion_tokens 6 · total_tokens 11

A broken stream renders what arrived before the fault (``StreamError.partial``) under a line
naming the fault: its kind, where (event number and byte offset) and the message.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from . import detect_stream_dialect, dialects
from .dialects.base import StreamAggregator
from .errors import StreamError
from .sse import SSEDecoder, sniff

__all__ = ["TITLE", "Line", "looks_like_stream", "render", "render_lines", "sniff"]

TITLE = "LLM stream"
SNIFF_BYTES = 65536  # how much of a body ``looks_like_stream`` decodes to find the first chunk
INDENT = "  "

# Styles of the pieces: what each text is, not how it looks (the mitmproxy layer maps them)
TITLE_STYLE = "title"
LABEL = "label"
TEXT = "text"
CODE = "code"
ERROR = "error"

Line = list[tuple[str, str]]


def looks_like_stream(body: bytes) -> bool:
    """An SSE body whose first JSON chunk (within ``SNIFF_BYTES``) is a completion chunk."""
    if sniff(body) != "sse":
        return False
    dec = SSEDecoder()
    for ev in dec.feed(body[:SNIFF_BYTES]):
        try:
            payload = json.loads(ev.data)
        except ValueError:
            continue
        if dialects.detect(payload) is not None:
            return True
        if isinstance(payload, dict) and "error" in payload:
            return True  # a stream whose first event is the upstream's error
    return False


def render(body: bytes, api: str | None = None, *, default_api: str | None = None) -> str:
    """The rendering as plain text."""
    return "\n".join(
        "".join(text for _, text in line) for line in render_lines(body, api, default_api=default_api)
    )


def render_lines(body: bytes, api: str | None = None, *, default_api: str | None = None) -> list[Line]:
    """An SSE body, or a non-stream JSON response, as lines of ``(style, text)``.

    ``api`` (``"chat"`` or ``"completions"``) overrides the dialect detected from the payload;
    ``default_api`` is used when none can be detected (e.g. the request path's). Raises
    ``ValueError`` for a body that is neither (a content view then falls back to another view).
    """
    kind = sniff(body)
    if kind == "sse":
        return _render_stream(body, api, default_api)
    if kind == "json":
        return _render_json(body, api, default_api)
    raise ValueError(f"not an LLM stream or response ({kind} body)")


# -- the two inputs ---------------------------------------------------------------------------------


def _render_stream(body: bytes, api: str | None, default_api: str | None) -> list[Line]:
    found = detect_stream_dialect(body[:SNIFF_BYTES])
    mod = dialects.get(api) if api else found or dialects.get(default_api or "chat")
    agg: StreamAggregator = mod.Aggregator()
    agg.feed(body)
    fault: StreamError | None = None
    try:
        response: dict[str, Any] | None = agg.finish()
    except StreamError as exc:
        fault = exc
        response = exc.partial
    dec = agg.decoder
    facts = [f"{dec.events} event{'s' if dec.events != 1 else ''}"]
    if dec.comments:
        facts.append(f"{dec.comments} comment{'s' if dec.comments != 1 else ''}")
    if not agg.done and fault is None:
        facts.append("no [DONE]")
    lines = [_title(TITLE, mod, facts, response, fault)]
    if fault is not None:
        lines += _fault_lines(fault)
    lines += [[(TEXT, f"note: {p}")] for p in agg.problems]
    if fault is not None and response is not None:
        lines.append([(TEXT, "what arrived before the fault:")])
    if response is not None:
        lines += _response_lines(response, mod)
    elif fault is not None:
        lines.append([(TEXT, "nothing was assembled before the fault")])
    return lines


def _render_json(body: bytes, api: str | None, default_api: str | None) -> list[Line]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("JSON body is not an object")
    err = obj.get("error")
    if isinstance(err, dict) and "choices" not in obj:
        # streamshim's own 502 for a broken stream carries what arrived as partial_response
        lines: list[Line] = [[(TITLE_STYLE, "LLM response · error")]]
        lines.append(
            [(ERROR, f"error ({err.get('code') or err.get('type') or 'unknown'}): {err.get('message')}")]
        )
        partial = err.get("partial_response")
        if isinstance(partial, dict):
            mod = (
                dialects.get(api) if api else dialects.detect(partial) or dialects.get(default_api or "chat")
            )
            lines.append([(LABEL, "partial response (what arrived before the fault):")])
            lines += _response_lines(partial, mod)
        return lines
    mod = dialects.get(api) if api else dialects.detect(obj)
    if mod is None:
        raise ValueError("JSON body is not a chat/completions response")
    return [_title("LLM response", mod, ["JSON"], obj, None), *_response_lines(obj, mod)]


# -- pieces -----------------------------------------------------------------------------------------


def _title(
    title: str, mod: ModuleType, facts: list[str], response: dict[str, Any] | None, fault: StreamError | None
) -> Line:
    parts = [title, mod.NAME, *facts]
    if fault is not None:
        parts.append(f"BROKEN ({fault.kind})")
    finishes = _finish_reasons(response)
    if finishes:
        parts.append(f"finish_reason: {', '.join(finishes)}")
    return [(TITLE_STYLE, " · ".join(parts))]


def _finish_reasons(response: dict[str, Any] | None) -> list[str]:
    out: list[str] = []
    for choice in _choices(response):
        reason = choice.get("finish_reason")
        text = str(reason) if reason is not None else "none"
        if text not in out:
            out.append(text)
    return out


def _fault_lines(fault: StreamError) -> list[Line]:
    lines: list[Line] = [[(ERROR, f"stream broken: {fault.kind} at {fault.where()}: {fault.message}")]]
    if fault.upstream_error is not None:
        lines.append([(LABEL, "upstream error:")])
        lines += _code_lines(fault.upstream_error, INDENT)
    return lines


def _choices(response: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not isinstance(response, dict):
        return []
    choices = response.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _response_lines(response: dict[str, Any], mod: ModuleType) -> list[Line]:
    lines: list[Line] = []
    ident = [f"{key}: {response[key]}" for key in ("model", "id") if response.get(key)]
    if ident:
        lines.append([(TEXT, " · ".join(ident))])
    choices = _choices(response)
    for n, choice in enumerate(choices):
        indent = ""
        if len(choices) > 1:
            lines.append([(LABEL, f"choice {choice.get('index', n)}:")])
            indent = INDENT
        lines += _choice_lines(choice, mod, indent)
    if not choices:
        lines.append([(TEXT, "no choices")])
    usage = response.get("usage")
    if isinstance(usage, dict):
        lines += _usage_lines(usage)
    return lines


def _choice_lines(choice: dict[str, Any], mod: ModuleType, indent: str) -> list[Line]:
    lines: list[Line] = []
    if mod is dialects.completions or "text" in choice:
        lines += _text_block("text", choice.get("text"), indent)
    message = choice.get("message")
    if isinstance(message, dict):
        rc, r = message.get("reasoning_content"), message.get("reasoning")
        if rc and r and rc != r:  # both, different: show each under its own name
            lines += _text_block("reasoning_content", rc, indent) + _text_block("reasoning", r, indent)
        else:
            lines += _text_block("reasoning", rc or r, indent)
        lines += _text_block("content", message.get("content"), indent)
        lines += _text_block("refusal", message.get("refusal"), indent)
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            lines.append([(LABEL, f"{indent}tool calls:")])
            for i, call in enumerate(calls):
                lines += _tool_call_lines(i, call, indent + INDENT)
        elif isinstance(message.get("function_call"), dict):
            lines.append([(LABEL, f"{indent}function call:")])
            lines += _function_lines(None, message["function_call"], None, indent + INDENT)
    reason = choice.get("finish_reason")
    lines.append([(LABEL, f"{indent}finish_reason: "), (TEXT, str(reason) if reason is not None else "none")])
    return lines


def _text_block(label: str, value: Any, indent: str) -> list[Line]:
    if value is None or value == "":
        return []
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    lines: list[Line] = [[(LABEL, f"{indent}{label}:")]]
    lines += [[(TEXT, f"{indent}{INDENT}{row}")] for row in text.splitlines() or [""]]
    return lines


def _tool_call_lines(i: int, call: Any, indent: str) -> list[Line]:
    if not isinstance(call, dict):
        return [[(TEXT, f"{indent}[{i}] {call!r}")]]
    fn = call.get("function")
    extra = call.get("type") if call.get("type") not in (None, "function") else None
    return _function_lines(i, fn if isinstance(fn, dict) else {}, call.get("id"), indent, extra)


def _function_lines(
    i: int | None, fn: dict[str, Any], call_id: Any, indent: str, call_type: Any = None
) -> list[Line]:
    head = f"[{i}] " if i is not None else ""
    details = [f"id {call_id}"] if call_id else []
    if call_type:
        details.append(f"type {call_type}")
    line: Line = [(LABEL, f"{indent}{head}{fn.get('name') or '(no name)'}")]
    if details:
        line.append((TEXT, f" ({', '.join(details)})"))
    lines = [line]
    args = fn.get("arguments")
    if args is None:
        return lines
    if isinstance(args, str):
        try:
            parsed = json.loads(args)
        except ValueError:
            lines.append([(TEXT, f"{indent}{INDENT}arguments (not valid JSON):")])
            lines += [[(CODE, f"{indent}{INDENT}{INDENT}{row}")] for row in args.splitlines() or [""]]
            return lines
    else:
        parsed = args
    lines += _code_lines(parsed, indent + INDENT)
    return lines


def _code_lines(value: Any, indent: str) -> list[Line]:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return [[(CODE, f"{indent}{row}")] for row in text.splitlines()]


def _usage_lines(usage: dict[str, Any]) -> list[Line]:
    """The counts on one line, each breakdown (``completion_tokens_details`` …) on its own."""
    counts = [f"{k} {v}" for k, v in usage.items() if not isinstance(v, dict) and v is not None]
    lines: list[Line] = [[(LABEL, "usage: "), (TEXT, " · ".join(counts) or "-")]]
    for key, value in usage.items():
        if isinstance(value, dict):
            parts = [
                f"{k} {json.dumps(v) if isinstance(v, dict | list) else v}"
                for k, v in value.items()
                if v is not None
            ]
            lines.append([(LABEL, f"{INDENT}{key}: "), (TEXT, " · ".join(parts) or "-")])
    return lines
