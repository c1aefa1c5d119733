"""Conformance check of a chat or legacy-completions SSE stream against the OpenAI chunk contract.

Sans-IO: ``check_stream(body)`` returns a ``Report`` whose findings each carry a code, a
severity and the number of the event where they were seen (``None`` for the stream as a whole).

Severity, decided by what the most-used client does with it (the openai SDK's own stream
accumulator, ``client.chat.completions.stream(...)``): ``error`` when such a client gets wrong or
incomplete data (truncation, malformed JSON, content after the finish, a tool call without
id/name, arguments that are not JSON, usage missing although asked, and a role or tool-call
id/name repeated after the first delta: the SDK concatenates every string it sees again, so it
returns ``assistantassistant`` and ``get_weatherget_weather``); ``warning`` when the stream
deviates but common clients cope or the deviation may be deliberate (a changing ``created``, a
missing ``[DONE]`` after every choice finished, usage sent unasked).

The codes are listed in ``CODES``; the README has the same table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from . import dialects
from .sse import DONE, SSEDecoder

Severity = Literal["error", "warning"]

CODES: dict[str, tuple[Severity, str]] = {
    # framing
    "not-sse": ("error", "the body holds no SSE data event"),
    "unterminated-event": ("warning", "the last event has no terminating blank line"),
    "empty-event": ("warning", "a data event with an empty payload"),
    "malformed-json": ("error", "a data payload that is not JSON"),
    "not-an-object": ("error", "a data payload that is JSON but not an object"),
    "upstream-error": ("error", "an error event or an error payload in the stream"),
    "no-terminator": ("warning", "no data: [DONE], although every choice finished"),
    "truncated": ("error", "the stream ended with a choice unfinished and no [DONE]"),
    "duplicate-done": ("warning", "data: [DONE] sent more than once"),
    "data-after-done": ("error", "data events after data: [DONE]"),
    # chunk identity
    "object-wrong": ("warning", "object is not chat.completion.chunk / text_completion"),
    "id-missing": ("warning", "a chunk without id"),
    "id-changed": ("warning", "id differs from the first chunk's"),
    "model-changed": ("warning", "model differs from the first chunk's"),
    "created-changed": ("warning", "created differs from the first chunk's"),
    # choices
    "choices-missing": ("error", "a chunk with neither a choices list nor usage"),
    "choice-missing": ("error", "a choice index the request asked for (n) never appears"),
    "role-not-first": ("warning", "the first delta of a choice has no role"),
    "role-repeated": ("error", "role sent again after the first delta (the openai SDK concatenates it)"),
    "content-after-finish": ("error", "content, reasoning or tool calls after the choice's finish_reason"),
    "finish-repeated": ("warning", "finish_reason sent twice for a choice"),
    "no-finish-reason": ("error", "a choice never got a finish_reason"),
    # tool calls
    "tool-call-no-index": ("error", "a tool-call delta without index"),
    "tool-call-index-gap": ("error", "a new tool call whose index is not the next one"),
    "tool-call-no-id": ("error", "the first delta of a tool call has no id"),
    "tool-call-no-name": ("error", "the first delta of a tool call has no function name"),
    "tool-call-id-changed": ("error", "a later delta of a tool call carries a different id"),
    "tool-call-repeated-id": (
        "error",
        "a later delta of a tool call repeats its id (the SDK concatenates it)",
    ),
    "tool-call-repeated-name": (
        "error",
        "a later delta of a tool call repeats its name (the SDK concatenates it)",
    ),
    "tool-call-bad-arguments": ("error", "a tool call's arguments do not parse as JSON at the end"),
    "tool-call-cut-arguments": ("warning", "arguments cut short by finish_reason length"),
    "finish-not-tool-calls": ("warning", "tool calls were made but finish_reason is not tool_calls"),
    "finish-tool-calls-without-calls": ("error", "finish_reason tool_calls but no tool call was made"),
    # usage
    "usage-missing": ("error", "stream_options.include_usage was asked but no usage arrived"),
    "usage-unasked": ("warning", "usage arrived although the request did not ask for it"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    event: int | None  # 1-based number of the SSE data event; None: the stream as a whole
    message: str

    @property
    def severity(self) -> Severity:
        return CODES[self.code][0]

    def line(self) -> str:
        where = f"event {self.event}" if self.event is not None else "stream"
        return f"{where}: {self.severity} {self.code}: {self.message}"


@dataclass
class Report:
    api: str
    events: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One line: ``12 events: 2 errors, 1 warning (truncated, tool-call-repeated-id ×3)``."""
        if not self.findings:
            return f"{self.events} events: conforms"
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.code] = counts.get(f.code, 0) + 1
        codes = ", ".join(f"{c} ×{n}" if n > 1 else c for c, n in counts.items())
        e, w = len(self.errors), len(self.warnings)
        return f"{self.events} events: {e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)} ({codes})"


@dataclass
class _Call:
    id: str | None
    name: str | None
    arguments: list[str] = field(default_factory=list)
    event: int = 0


@dataclass
class _Choice:
    first_event: int
    role_seen: bool = False
    finish: str | None = None
    finish_event: int = 0
    calls: dict[int, _Call] = field(default_factory=dict)


class _Checker:
    def __init__(self, api: str, usage_asked: bool | None, n: int | None) -> None:
        self.report = Report(api)
        self.chat = api == dialects.chat.NAME
        self.object = dialects.get(api).CHUNK_OBJECT
        self.usage_asked = usage_asked
        self.n = n
        self.choices: dict[int, _Choice] = {}
        self.first: dict[str, Any] = {}
        self.done_at = 0
        self.usage_seen = False
        self.errored = False

    def add(self, code: str, event: int | None, message: str) -> None:
        self.report.findings.append(Finding(code, event, message))

    def event(self, num: int, name: str, data: str) -> None:
        if self.done_at:
            if data.strip() == DONE:
                self.add("duplicate-done", num, f"[DONE] again (first at event {self.done_at})")
            else:
                self.add("data-after-done", num, f"after [DONE] at event {self.done_at}: {_clip(data)}")
            return
        if data.strip() == DONE:
            self.done_at = num
            return
        if name == "error":
            self.errored = True
            self.add("upstream-error", num, f"event: error: {_clip(data)}")
            return
        if not data.strip():
            self.add("empty-event", num, "data line with nothing after it")
            return
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            self.add("malformed-json", num, f"{exc.msg} at column {exc.colno}: {_clip(data)}")
            return
        if not isinstance(chunk, dict):
            self.add("not-an-object", num, f"a JSON {type(chunk).__name__}: {_clip(data)}")
            return
        if "error" in chunk and chunk["error"] not in (None, {}, False):
            self.errored = True
            self.add("upstream-error", num, _clip(json.dumps(chunk["error"], ensure_ascii=False)))
            return
        self.chunk(num, chunk)

    def chunk(self, num: int, chunk: dict[str, Any]) -> None:
        if chunk.get("object") != self.object:
            self.add("object-wrong", num, f"object {chunk.get('object')!r}, expected {self.object!r}")
        if not chunk.get("id"):
            self.add("id-missing", num, "no id")
        for key in ("id", "model", "created"):
            value = chunk.get(key)
            if value in (None, ""):
                continue
            if key not in self.first:
                self.first[key] = (value, num)
            elif value != self.first[key][0]:
                was, at = self.first[key]
                self.add(f"{key}-changed", num, f"{key} {value!r}, event {at} had {was!r}")
        if chunk.get("usage") is not None:
            self.usage_seen = True
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            if chunk.get("usage") is None:
                self.add("choices-missing", num, f"choices is {_clip(json.dumps(choices))}")
            return
        for choice in choices:
            if isinstance(choice, dict):
                self.choice(num, choice)

    def choice(self, num: int, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        st = self.choices.get(index)
        if st is None:
            st = self.choices[index] = _Choice(num)
        if self.chat:
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            has_role = bool(delta.get("role"))
            if has_role and st.role_seen:
                self.add("role-repeated", num, f"choice {index}: role {delta['role']!r} again")
            elif not has_role and not st.role_seen and st.first_event == num:
                self.add("role-not-first", num, f"choice {index}: first delta has no role")
            st.role_seen = st.role_seen or has_role
            payload = [k for k in ("content", "reasoning_content", "reasoning", "refusal") if delta.get(k)]
            calls = delta.get("tool_calls")
            if calls:
                payload.append("tool_calls")
        else:
            payload = ["text"] if choice.get("text") else []
            calls = None
        if st.finish is not None and payload:
            self.add(
                "content-after-finish",
                num,
                f"choice {index}: {', '.join(payload)} after finish_reason {st.finish!r} "
                f"(event {st.finish_event})",
            )
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self.tool_call(num, index, st, call)
        finish = choice.get("finish_reason")
        if finish is not None:
            if st.finish is not None:
                self.add("finish-repeated", num, f"choice {index}: {finish!r} after {st.finish!r}")
            else:
                st.finish, st.finish_event = finish, num

    def tool_call(self, num: int, index: int, st: _Choice, call: dict[str, Any]) -> None:
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        i = call.get("index")
        if not isinstance(i, int):
            self.add("tool-call-no-index", num, f"choice {index}: tool call without index: {_clip(call)}")
            i = max(st.calls, default=-1) + (0 if call.get("id") is None and st.calls else 1)
        cur = st.calls.get(i)
        at = f"choice {index}: tool call {i}"
        if cur is None:
            expected = max(st.calls, default=-1) + 1
            if i != expected:
                self.add("tool-call-index-gap", num, f"{at}: index {i}, expected {expected}")
            if not call.get("id"):
                self.add("tool-call-no-id", num, f"{at} starts without id")
            if not fn.get("name"):
                self.add("tool-call-no-name", num, f"{at} starts without a name")
            cur = st.calls[i] = _Call(call.get("id"), fn.get("name"), event=num)
        else:
            cid = call.get("id")
            if cid and cur.id and cid != cur.id:
                self.add("tool-call-id-changed", num, f"{at} id {cid!r}, was {cur.id!r}")
            elif cid:
                self.add("tool-call-repeated-id", num, f"{at} repeats id {cid!r}")
            cur.id = cur.id or cid
            name = fn.get("name")
            if name:
                self.add("tool-call-repeated-name", num, f"{at} repeats name {name!r}")
            cur.name = cur.name or name
        args = fn.get("arguments")
        if isinstance(args, str):
            cur.arguments.append(args)

    def finish(self, total_events: int) -> Report:
        rep = self.report
        rep.events = total_events
        if total_events == 0:
            self.add("not-sse", None, "no data events")
            return rep
        unfinished = [i for i, st in sorted(self.choices.items()) if st.finish is None]
        if not self.done_at and not self.errored:
            if unfinished or not self.choices:
                self.add("truncated", None, "no [DONE] and no finish_reason on every choice")
            else:
                self.add("no-terminator", None, "every choice finished, but no data: [DONE] followed")
        for i in unfinished:
            self.add("no-finish-reason", None, f"choice {i} never got a finish_reason")
        if self.n is not None:
            for i in range(self.n):
                if i not in self.choices:
                    self.add("choice-missing", None, f"n={self.n} asked, choice {i} never appeared")
        for i, st in sorted(self.choices.items()):
            self._finish_calls(i, st)
        if self.usage_asked is True and not self.usage_seen and not self.errored:
            self.add("usage-missing", None, "include_usage asked, no chunk carried usage")
        elif self.usage_asked is False and self.usage_seen:
            self.add("usage-unasked", None, "usage arrived unasked")
        return rep

    def _finish_calls(self, index: int, st: _Choice) -> None:
        for i, call in sorted(st.calls.items()):
            text = "".join(call.arguments)
            try:
                json.loads(text or "{}")
            except ValueError as exc:
                code = "tool-call-cut-arguments" if st.finish == "length" else "tool-call-bad-arguments"
                what = f"choice {index}: tool call {i} ({call.name})"
                self.add(code, call.event, f"{what}: {exc}: {_clip(text)}")
        if st.calls and st.finish not in (None, "tool_calls", "length", "function_call"):
            self.add(
                "finish-not-tool-calls",
                st.finish_event,
                f"choice {index}: {len(st.calls)} tool call(s), finish_reason {st.finish!r}",
            )
        if not st.calls and st.finish == "tool_calls":
            self.add("finish-tool-calls-without-calls", st.finish_event, f"choice {index}: no tool call")


def check_stream(
    body: bytes,
    api: str | None = None,
    *,
    usage_asked: bool | None = None,
    n: int | None = None,
) -> Report:
    """Check one SSE body. ``api``: "chat" or "completions" (default: detected). ``usage_asked``:
    whether the request set ``stream_options.include_usage`` (``None``: unknown, not checked).
    ``n``: the number of choices asked for (``None``: not checked)."""
    if api is None:
        from . import detect_stream_dialect

        api = (detect_stream_dialect(body) or dialects.chat).NAME
    checker = _Checker(api, usage_asked, n)
    dec = SSEDecoder()
    for ev in [*dec.feed(body), *dec.close()]:
        checker.event(ev.number, ev.event, ev.data)
    report = checker.finish(dec.events)
    if dec.problems:
        report.findings.append(Finding("unterminated-event", dec.events, dec.problems[0]))
    return report


def request_expectations(request_body: bytes | str | None) -> tuple[bool | None, int | None]:
    """``usage_asked`` and ``n`` from a chat/completions request body (``None`` when unknown)."""
    try:
        req = json.loads(request_body or b"")
    except ValueError:
        return None, None
    if not isinstance(req, dict):
        return None, None
    opts = req.get("stream_options")
    usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
    n = req.get("n")
    return usage, n if isinstance(n, int) and n > 0 else None


def _clip(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
