"""A readable rendering of an LLM stream: what the client assembles from it, not the raw chunks.

Mitmproxy-free, and it knows no API: it renders the dialect's ``Meaning`` of the aggregated
stream (or of a non-stream JSON body). ``render_lines(body)`` returns lines of ``(style, text)``
pieces, ``render(body)`` the same as plain text; ``mitm/contentview.py`` adapts them to
mitmproxy's content view APIs. The layout:

    LLM stream · <dialect> · <events> · <its stop-reason label>: <value>
    model: … · id: …
    reasoning:            (the output's reasoning text, under the dialect's field name when
      …                    there are several)
    content:              (its text parts, under their field names)
      …
    tool calls:
      [0] get_weather (id call_1)
          {
            "city": "Paris"
          }
    <stop-reason label>: <value>
    usage: <each count> · …

Several outputs (OpenAI's ``n``) are rendered one after another under ``choice N:``. A broken
stream renders what arrived before the fault (``StreamError.partial``) under a line naming the
fault: its kind, where (event number and byte offset) and the message.
"""

from __future__ import annotations

import json
from typing import Any

from . import dialects
from .dialects.base import Dialect, Meaning, Output, ToolCall
from .errors import StreamError
from .framing import decode_json, sniff

__all__ = ["TITLE", "Line", "looks_like_stream", "render", "render_lines", "sniff"]

TITLE = "LLM stream"
SNIFF_BYTES = dialects.SNIFF_BYTES  # how much of a body ``looks_like_stream`` decodes
INDENT = "  "

# Styles of the pieces: what each text is, not how it looks (the mitmproxy layer maps them)
TITLE_STYLE = "title"
LABEL = "label"
TEXT = "text"
CODE = "code"
ERROR = "error"

Line = list[tuple[str, str]]
_KIND_ORDER = {"reasoning": 0, "text": 1, "refusal": 2}


def looks_like_stream(body: bytes) -> bool:
    """A stream whose first telling event (within ``SNIFF_BYTES``) is a known API's, or an error."""
    kind = sniff(body)
    if kind not in ("sse", "ndjson"):
        return False
    if dialects.detect_body(body[:SNIFF_BYTES]) is not None:
        return True
    dec = dialects.FRAMINGS[kind].decoder()
    for ev in dec.feed(body[:SNIFF_BYTES]):
        try:
            payload = decode_json(ev.data)
        except ValueError:
            continue
        if isinstance(payload, dict) and "error" in payload:
            return True  # a stream whose first event is the upstream's error
    return False


def render(body: bytes, api: str | None = None, *, default_api: str | None = None) -> str:
    """The rendering as plain text."""
    return "\n".join(
        "".join(text for _, text in line) for line in render_lines(body, api, default_api=default_api)
    )


def render_lines(body: bytes, api: str | None = None, *, default_api: str | None = None) -> list[Line]:
    """A stream body, or a non-stream JSON response, as lines of ``(style, text)``.

    ``api`` overrides the dialect detected from the payload; ``default_api`` is used when none can
    be detected (e.g. the request path's). Raises ``ValueError`` for a body that is neither (a
    content view then falls back to another view).
    """
    kind = sniff(body)
    if kind in ("sse", "ndjson"):
        return _render_stream(body, api, default_api)
    if kind == "json":
        return _render_json(body, api, default_api)
    raise ValueError(f"not an LLM stream or response ({kind} body)")


def _dialect(api: str | None, found: Dialect | None, default_api: str | None) -> Dialect:
    if api:
        return dialects.get(api)
    return found or dialects.get(default_api or dialects.DEFAULT.name)


# -- the two inputs ---------------------------------------------------------------------------------


def _render_stream(body: bytes, api: str | None, default_api: str | None) -> list[Line]:
    dialect = _dialect(api, None if api else dialects.detect_body(body[:SNIFF_BYTES]), default_api)
    agg = dialect.aggregator()
    agg.feed(body)
    fault: StreamError | None = None
    try:
        response: dict[str, Any] | None = agg.finish()
    except StreamError as exc:
        fault = exc
        response = exc.partial
    dec = agg.decoder
    facts = [f"{dec.events} event{'s' if dec.events != 1 else ''}"]
    comments = getattr(dec, "comments", 0)
    if comments:
        facts.append(f"{comments} comment{'s' if comments != 1 else ''}")
    if not agg.terminated and fault is None:
        facts.append(f"no {dialect.terminal_name}")
    meaning = dialect.meaning(response) if response is not None else None
    lines = [_title(TITLE, dialect, facts, meaning, fault)]
    if fault is not None:
        lines += _fault_lines(fault)
    lines += [[(TEXT, f"note: {p}")] for p in agg.problems]
    if fault is not None and meaning is not None:
        lines.append([(TEXT, "what arrived before the fault:")])
    if meaning is not None:
        lines += _response_lines(meaning)
    elif fault is not None:
        lines.append([(TEXT, "nothing was assembled before the fault")])
    return lines


def _render_json(body: bytes, api: str | None, default_api: str | None) -> list[Line]:
    try:
        obj = decode_json(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("JSON body is not an object")
    found = None if api else dialects.detect(obj)
    dialect = _dialect(api, found, default_api)
    err = dialect.error_of(obj)
    if err is not None:
        # streamshim's own error for a broken stream carries what arrived as its partial answer
        code, message, partial = err
        lines: list[Line] = [[(TITLE_STYLE, "LLM response · error")]]
        lines.append([(ERROR, f"error ({code}): {message}")])
        if isinstance(partial, dict):
            pd = _dialect(api, dialects.detect(partial), default_api)
            lines.append([(LABEL, "partial response (what arrived before the fault):")])
            lines += _response_lines(pd.meaning(partial))
        return lines
    if found is None and not api:
        raise ValueError("JSON body is not a response of a known API")
    meaning = dialect.meaning(obj)
    return [_title("LLM response", dialect, ["JSON"], meaning, None), *_response_lines(meaning)]


# -- pieces -----------------------------------------------------------------------------------------


def _title(
    title: str, dialect: Dialect, facts: list[str], meaning: Meaning | None, fault: StreamError | None
) -> Line:
    parts = [title, dialect.name, *facts]
    if fault is not None:
        parts.append(f"BROKEN ({fault.kind})")
    finishes: list[str] = []
    for o in meaning.outputs if meaning is not None else ():
        text = str(o.finish) if o.finish is not None else "none"
        if text not in finishes:
            finishes.append(text)
    if finishes and meaning is not None:
        parts.append(f"{meaning.finish_label}: {', '.join(finishes)}")
    return [(TITLE_STYLE, " · ".join(parts))]


def _fault_lines(fault: StreamError) -> list[Line]:
    lines: list[Line] = [[(ERROR, f"stream broken: {fault.kind} at {fault.where()}: {fault.message}")]]
    if fault.upstream_error is not None:
        lines.append([(LABEL, "upstream error:")])
        lines += _code_lines(fault.upstream_error, INDENT)
    return lines


def _response_lines(meaning: Meaning) -> list[Line]:
    lines: list[Line] = []
    ident = [f"{key}: {meaning.ident[key]}" for key in ("model", "id") if meaning.ident.get(key)]
    if ident:
        lines.append([(TEXT, " · ".join(ident))])
    outputs = meaning.outputs
    label = meaning.outputs_label.rstrip("s")
    if meaning.odd_outputs:
        value = json.dumps(meaning.outputs_value, ensure_ascii=False, default=str)
        lines.append([(ERROR, f"{meaning.outputs_label} is not a list of objects: {value[:200]}")])
    for output in outputs:
        indent = ""
        if len(outputs) > 1:
            lines.append([(LABEL, f"{label} {output.index}:")])
            indent = INDENT
        lines += _output_lines(output, meaning.finish_label, indent)
    if not outputs:
        lines.append([(TEXT, f"no {meaning.outputs_label}")])
    if isinstance(meaning.usage, dict):
        lines += _usage_lines(meaning.usage)
    return lines


def _output_lines(output: Output, finish_label: str, indent: str) -> list[Line]:
    lines: list[Line] = []
    parts = sorted(output.parts, key=lambda p: _KIND_ORDER.get(p[0], 1))
    reasoning = [(name, text) for kind, name, text in parts if kind == "reasoning" and text]
    distinct = {json.dumps(t, sort_keys=True, default=str) for _, t in reasoning}
    for kind, name, text in parts:
        if kind == "reasoning":
            if len(distinct) > 1:  # more than one, different: each under its own name
                lines += _text_block(name, text, indent)
            elif reasoning and name == reasoning[0][0]:
                lines += _text_block("reasoning", text, indent)
        else:
            lines += _text_block(name, text, indent)
    if output.tool_calls:
        lines.append([(LABEL, f"{indent}tool calls:")])
        for i, call in enumerate(output.tool_calls):
            lines += _call_lines(i, call, indent + INDENT)
    elif output.legacy_call is not None:
        lines.append([(LABEL, f"{indent}function call:")])
        lines += _call_lines(None, output.legacy_call, indent + INDENT)
    finish = output.finish
    lines.append(
        [(LABEL, f"{indent}{finish_label}: "), (TEXT, str(finish) if finish is not None else "none")]
    )
    return lines


def _text_block(label: str, value: Any, indent: str) -> list[Line]:
    if value is None or value == "":
        return []
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    lines: list[Line] = [[(LABEL, f"{indent}{label}:")]]
    lines += [[(TEXT, f"{indent}{INDENT}{row}")] for row in text.splitlines() or [""]]
    return lines


def _call_lines(i: int | None, call: ToolCall, indent: str) -> list[Line]:
    head = f"[{i}] " if i is not None else ""
    details = [f"id {call.id}"] if call.id else []
    if call.type:
        details.append(f"type {call.type}")
    line: Line = [(LABEL, f"{indent}{head}{call.name or '(no name)'}")]
    if details:
        line.append((TEXT, f" ({', '.join(details)})"))
    lines = [line]
    args = call.arguments
    if args is None:
        return lines
    if isinstance(args, str):
        try:
            parsed = decode_json(args)
        except ValueError:
            lines.append([(TEXT, f"{indent}{INDENT}arguments (not valid JSON):")])
            lines += [[(CODE, f"{indent}{INDENT}{INDENT}{row}")] for row in args.splitlines() or [""]]
            return lines
    else:
        parsed = args
    lines += _code_lines(parsed, indent + INDENT)
    return lines


def _code_lines(value: Any, indent: str) -> list[Line]:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
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
