"""The contract every API dialect implements, and what dialects share that knows no API.

A dialect is one API's whole knowledge (OpenAI chat completions, legacy completions, …): which
requests are its own, what the client asked for and how to ask the upstream for the other shape,
how its events aggregate into one response and how a response is streamed back, what a
conforming stream looks like, what a response means, the error body a JSON client gets instead
of a broken stream, and the byte markers a passthrough stream is judged by. ``Dialect`` below is that
contract; ``dialects/__init__.py`` registers the implementations and resolves which one applies.

Also here, because every dialect uses them: ``Aggregator`` (the event-driven aggregation driver
with its error rules), ``Checker`` (the framing-level conformance findings), the ``Meaning`` of a
response, and small helpers (text splitting, JSON scanning, snippets).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import MalformedEvent, NotAStream, StreamError, TruncatedStream, UpstreamErrorEvent, printable
from ..framing import Decoder, Event, Framing, decode_json, encode_json, framing, json_too_deep

DEFAULT_CHUNK_CHARS = 16
FEED_SLICE = 64 * 1024
Severity = Literal["error", "warning"]

FILL_USAGE = ("estimate", "zeros", "off")  # "off": rule key `fill_usage: false`
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text (OpenAI's tokenizer guide)


# -- the contract ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asked:
    """What a client asked for, read from its request body."""

    stream: bool
    usage: bool = False  # a usage record in the stream (chat's stream_options.include_usage)
    n: int | None = None  # choices asked for (None: not said, or not part of the API)


@dataclass(frozen=True)
class Watch:
    """Byte markers of a dialect's stream, by which a passthrough stream is judged once it has
    ended (``passthrough.judge``), without parsing it: the record that ends a complete stream
    (looked for in its last event) and records that carry an error (looked for in its last
    ``TAIL_BYTES``). An error marker followed by one of ``not_errors`` (e.g. ``"error":null``) is
    not an error."""

    terminal: tuple[bytes, ...]
    errors: tuple[bytes, ...]
    not_errors: tuple[bytes, ...] = (b":null", b":{}", b":false")


class Dialect(ABC):
    """One API dialect. Instances are stateless; ``aggregator()`` and ``checker()`` make the
    per-stream objects."""

    name: ClassVar[str]  # "chat", "completions", … (the rule key ``api:``, the CLI's ``--api``)
    title: ClassVar[str]  # what users call it, e.g. "OpenAI chat completions"
    framing_name: ClassVar[str] = "sse"
    path_suffixes: ClassVar[tuple[str, ...]]  # request paths (query left out) it serves
    terminal_name: ClassVar[str]  # how the view names the end-of-stream record, e.g. "[DONE]"
    watch: ClassVar[Watch]
    codes: ClassVar[dict[str, tuple[Severity, str]]]  # conformance finding codes

    @property
    def framing(self) -> Framing:
        return framing(self.framing_name)

    def path_globs(self) -> tuple[str, ...]:
        """The rule ``path`` globs that cover this dialect's endpoints."""
        return tuple(f"*{s}" for s in self.path_suffixes)

    def path_match(self, path: str) -> int:
        """How specifically this dialect claims a request path: the length of the matching
        suffix, 0 when it is not one of its endpoints. The registry picks the longest."""
        clean = path.split("?", 1)[0].rstrip("/")
        return max((len(s) for s in self.path_suffixes if clean.endswith(s)), default=0)

    @abstractmethod
    def detect(self, payload: Any) -> int:
        """How surely a JSON response body or one stream event's payload is this dialect's: 2 it
        names its own type (``object``, ``type``), 1 it has the shape, 0 it is not. The registry
        picks the surest."""

    # -- the request ------------------------------------------------------------------------
    @abstractmethod
    def asked(self, body: dict[str, Any]) -> Asked | None:
        """What the client asked for; ``None`` for a request streamshim must leave alone (e.g. a
        ``stream`` that is not a boolean)."""

    @abstractmethod
    def ask_stream(self, body: dict[str, Any], asked: Asked) -> bool:
        """Rewrite ``body`` (in place) to ask the upstream for a stream carrying everything a
        non-stream answer has. Returns whether a usage record was asked for that the client did
        not ask for (it is taken out again for a streaming client)."""

    @abstractmethod
    def ask_json(self, body: dict[str, Any]) -> None:
        """Rewrite ``body`` (in place) to ask the upstream for one JSON answer."""

    # -- conversions ------------------------------------------------------------------------
    @abstractmethod
    def aggregator(self, asked: Asked | None = None) -> Aggregator:
        """A fresh aggregator: this dialect's events in, its non-stream response out. ``asked``:
        what the request asked for, when known (a stream that ends without the ``n`` choices it
        asked for is cut, not complete)."""

    @abstractmethod
    def synthesize(
        self, response: Any, *, usage: bool = False, chunk_chars: int = DEFAULT_CHUNK_CHARS
    ) -> Iterator[Event]:
        """The events (terminator included) that stream ``response``; ``usage``: the client
        asked for a usage record in the stream. Raises ``BadResponse`` for a body that is not
        this dialect's response."""

    # -- conformance ------------------------------------------------------------------------
    @abstractmethod
    def checker(self, *, usage_asked: bool | None = None, n: int | None = None) -> Checker:
        """A fresh conformance checker. ``usage_asked``/``n``: what the request asked for
        (``None``: unknown, not checked)."""

    # -- meaning and errors -----------------------------------------------------------------
    @abstractmethod
    def meaning(self, response: dict[str, Any]) -> Meaning:
        """What a response (non-stream body, or aggregated stream) means to a client."""

    @abstractmethod
    def error_body(
        self, message: str, code: str, *, partial: Any = None, upstream_error: Any = None
    ) -> dict[str, Any]:
        """The error body, in this API's own error envelope, a JSON client gets instead of an
        answer streamshim could not make (``partial``: what arrived before the fault)."""

    def error_status(self, upstream_error: Any) -> int:
        """The HTTP status a JSON client gets with ``error_body`` for a stream that failed with
        the upstream's own error object ``upstream_error`` (``None``: streamshim found the fault).
        Default 502; a dialect whose API answers some errors with their own status (Anthropic's
        ``overloaded_error`` is 529) returns it, so that clients retry and report as they would
        for a direct call."""
        return 502

    @abstractmethod
    def error_of(self, body: Any) -> tuple[str, str, Any] | None:
        """``(code, message, partial)`` when a JSON body is this API's error envelope (streamshim's
        own included, with what it kept of a broken stream), else ``None``."""

    # the request fields that make the prompt (for the estimate of its tokens); none: no fill
    prompt_keys: ClassVar[tuple[str, ...]] = ()
    # what this API calls the two counts, for the flow's account
    usage_words: ClassVar[tuple[str, str]] = ("prompt", "completion")

    def fill_usage(self, response: dict[str, Any], method: str, generated: int, request: Any) -> str | None:
        """Give a response built from a stream that carried no usage the usage a non-stream body
        always has (``method``: estimate, zeros, off): ``estimate`` counts the stream's events
        that carried generated tokens and the request's prompt characters / ``CHARS_PER_TOKEN``.
        Returns how it was filled, for the flow's account (``None``: nothing filled)."""
        if self.usage_of(response) is not None or method == "off" or not self.prompt_keys:
            return None
        if method == "zeros":
            response["usage"] = self.usage_record(0, 0)
            return "zeros"
        prompt = estimate_tokens(prompt_chars(request, self.prompt_keys))
        response["usage"] = self.usage_record(prompt, generated)
        asked, answered = self.usage_words
        return (
            f"estimate: {generated} {answered} tokens = chunks with generated text, "
            f"{prompt} {asked} tokens = request characters / {CHARS_PER_TOKEN}"
        )

    def usage_record(self, prompt: int, completion: int) -> dict[str, Any]:
        """A usage object of this API with these counts (for ``fill_usage``)."""
        raise NotImplementedError(f"{self.name} fills no usage")

    def usage_of(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """The response's usage record, ``None`` when it has none."""
        usage = response.get("usage")
        return usage if isinstance(usage, dict) else None

    def repairer(self, asked: Asked, *, strip_usage: bool, repair: bool) -> Repairer | None:
        """What rewrites this dialect's stream on its way to a stream client, event by event:
        ``strip_usage`` takes out the usage record streamshim asked for and the client did not;
        ``repair`` (rule key) mends what breaks the contract where the right value is known from
        the stream itself. ``None``: nothing to rewrite (the stream passes untouched)."""
        return None

    def promote_tool_calls(self, response: dict[str, Any]) -> int:
        """Rule ``promote_tool_calls``: move tool calls of a later choice into the first one.
        Returns the index they came from, 0 when nothing moved (or the API has no choices)."""
        return 0


class Repairer(ABC):
    """Rewrites one stream, event by event, for a stream client. ``event`` gets each event's
    bytes as they arrived and returns what to forward: the same bytes when nothing needs
    changing (a conformant stream passes byte for byte), the rewritten event, or ``b""`` to drop
    it. ``end(clean)`` at the end of the upstream body returns what to append (``clean``: the
    body ended normally; a stream cut short by the connection gets nothing, it cannot be
    sent). ``counts`` says what was repaired, per kind, for the flow's account."""

    def __init__(self, framing_: Framing) -> None:
        self.framing = framing_
        self.counts: dict[str, int] = {}

    def note(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def decode(self, block: bytes) -> Event | None:
        """The one event in ``block`` (None when it holds none or several)."""
        dec = self.framing.decoder()
        events = dec.feed(block) + dec.close()
        return events[0] if len(events) == 1 else None

    def encode(self, ev: Event, payload: Any) -> bytes:
        return self.framing.encode([Event(data=encode_json(payload), event=ev.event, id=ev.id)])

    @abstractmethod
    def event(self, block: bytes) -> bytes: ...

    @abstractmethod
    def end(self, clean: bool) -> bytes: ...


# -- what a response means ------------------------------------------------------------------------


@dataclass
class ToolCall:
    name: str | None
    arguments: Any  # as sent: a JSON string (usually), or a parsed object
    id: str | None = None
    type: str | None = None  # only when not the API's usual kind ("function")

    def parsed(self) -> Any:
        if isinstance(self.arguments, str):
            try:
                return decode_json(self.arguments)
            except ValueError:
                return self.arguments
        return self.arguments


@dataclass
class Output:
    """One answer: a choice (OpenAI chat/completions), the message (Anthropic, Responses)."""

    index: int
    # (kind, name, text) in the dialect's order: kind is "text", "reasoning" or "refusal", name
    # the field it came from ("content", "reasoning_content", "thinking", …)
    parts: list[tuple[str, str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    legacy_call: ToolCall | None = None  # chat's deprecated function_call (shown, not compared)
    finish: Any = None


@dataclass
class Meaning:
    """What a client acts on. ``as_dict`` is what ``diff`` compares (ids left out: they differ
    run to run); the view renders the rest too."""

    outputs: list[Output] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: Any = None
    ident: dict[str, Any] = field(default_factory=dict)  # model, id
    has_outputs: bool = True  # the body had its outputs list (an error body has none)
    outputs_label: str = "choices"
    finish_label: str = "finish_reason"
    # the outputs field when it is not a list of objects (``-1``, ``[1, null]``): no API sends
    # that, so it means itself, and is compared as it is (``outputs`` holds what could be read)
    odd_outputs: bool = False
    outputs_value: Any = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.error is not None:
            out["error"] = self.error
        if self.has_outputs and self.odd_outputs:
            out[self.outputs_label] = self.outputs_value
        elif self.has_outputs:
            items = []
            for o in self.outputs:
                item: dict[str, Any] = {name: text for _, name, text in o.parts}
                if o.tool_calls:
                    item["tool_calls"] = [(c.name, c.parsed()) for c in o.tool_calls]
                item[self.finish_label] = o.finish
                items.append(item)
            out[self.outputs_label] = items
        if self.usage is not None:
            out["usage"] = self.usage
        return out


# -- aggregation ----------------------------------------------------------------------------------


class Aggregator(ABC):
    """One upstream stream in, one non-stream response out, incrementally.

    ``feed(bytes)`` (decoded with the dialect's framing) or ``feed_event(event)`` any number of
    times, then ``finish()``: it returns the response, or raises a ``StreamError`` carrying what
    was received so far (``.partial``). The first fault stops aggregation; ``error`` tells a
    caller about it before ``finish``. ``problems`` lists what was accepted but not well-formed.
    """

    def __init__(self, framing_: Framing) -> None:
        self.decoder: Decoder = framing_.decoder()
        self.chunks = 0  # events merged
        self.error: StreamError | None = None
        self.problems: list[str] = []
        self.terminated = False  # the dialect's end-of-stream record arrived
        self._head = b""
        self._closing = False

    # -- driving ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if len(self._head) < 80:
            self._head += data[: 80 - len(self._head)]
        view = memoryview(data)
        for start in range(0, len(data), FEED_SLICE):  # a whole body is decoded in slices: bounded memory
            for ev in self.decoder.feed(bytes(view[start : start + FEED_SLICE])):
                self.feed_event(ev)

    def feed_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.feed_event(ev)

    def feed_event(self, ev: Event) -> None:
        if self.error is not None or self.before_json(ev):
            return
        data = ev.data
        try:
            obj = loads(data)
        except ValueError as exc:
            if self._closing:  # the body ended inside this event's JSON: a cut, not bad JSON
                self.fail(TruncatedStream, f"stream ended in the middle of an event: {snippet(data)}", ev)
            else:
                self.fail(MalformedEvent, f"data is not valid JSON ({exc}): {snippet(data)}", ev)
            return
        if not isinstance(obj, dict):
            self.fail(MalformedEvent, f"data is JSON but not an object: {snippet(data)}", ev)
            return
        self.chunks += 1
        try:
            self.add(obj, ev)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:  # a field of an unexpected type
            self.chunks -= 1
            self.fail(MalformedEvent, f"event has an unexpected shape ({exc!r}): {snippet(data)}", ev)

    def finish(self) -> dict[str, Any]:
        """End of the upstream body. Returns the response or raises ``StreamError``."""
        self._closing = True
        self.feed_events(self.decoder.close())
        self.problems.extend(self.decoder.problems)
        if self.error is None:
            if self.decoder.events == 0:
                if self.decoder.total_bytes == 0:
                    self.fail(TruncatedStream, "upstream body is empty", None)
                else:
                    self.fail(
                        NotAStream,
                        f"upstream body is not an event stream: no event in {self.decoder.total_bytes} "
                        f"bytes, starts with {snippet(self._head)}",
                        None,
                    )
            else:
                self.end()
        if self.error is not None:
            raise self.error
        return self.build(complete=True)

    def fail(
        self, cls: type[StreamError], message: str, ev: Event | None, upstream_error: Any = None
    ) -> None:
        if self.error is not None:
            return
        self.error = cls(
            printable(message),  # it quotes the stream: terminal-safe, whichever dialect wrote it
            event_number=ev.number if ev else None,
            byte_offset=ev.offset if ev else self.decoder.total_bytes,
            partial=self._partial(),
            upstream_error=upstream_error,
        )

    def fail_upstream(self, ev: Event, obj: Any, error: Any, what: str = "upstream sent an error") -> None:
        self.fail(UpstreamErrorEvent, f"{what}: {error_text(error, ev.data)}", ev, error)

    def _partial(self) -> dict[str, Any] | None:
        if not self.chunks:
            return None
        try:
            return self.build(complete=False)
        except (TypeError, AttributeError, ValueError, KeyError):
            return None

    # -- the dialect's part -------------------------------------------------------------------
    def before_json(self, ev: Event) -> bool:
        """An event that is not a JSON object by design (e.g. ``[DONE]``), or a named error
        event: handle it and return True. Default: none."""
        return False

    @abstractmethod
    def add(self, obj: dict[str, Any], ev: Event) -> None:
        """Merge one parsed event payload (may call ``fail``)."""

    @abstractmethod
    def end(self) -> None:
        """The stream ended cleanly (at least one event): ``fail`` when it ended incomplete."""

    @abstractmethod
    def build(self, complete: bool) -> dict[str, Any]:
        """The non-stream response from everything merged so far."""

    def generated_pieces(self) -> int:
        """How many events carried generated tokens (text, reasoning, tool calls): what a stream
        tells of the completion's token count when it carries no usage."""
        return 0


# -- conformance ----------------------------------------------------------------------------------

FRAMING_CODES: dict[str, tuple[Severity, str]] = {
    "not-sse": ("error", "the body holds no SSE data event"),
    "unterminated-event": ("warning", "the last event has no terminating blank line"),
    "empty-event": ("warning", "a data event with an empty payload"),
    "malformed-json": ("error", "a data payload that is not JSON"),
    "not-an-object": ("error", "a data payload that is JSON but not an object"),
    "upstream-error": ("error", "an error event or an error payload in the stream"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    event: int | None  # 1-based number of the event; None: the stream as a whole
    message: str
    severity: Severity = "error"

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


class Checker(ABC):
    """Conformance of one stream, event by event. The framing-level findings (``FRAMING_CODES``)
    are found here; a dialect adds its own in ``before_json``, ``on_object`` and ``end``."""

    codes: ClassVar[dict[str, tuple[Severity, str]]] = FRAMING_CODES

    def __init__(self, api: str) -> None:
        self.report = Report(api)
        self.errored = False  # an error event or payload was seen

    def add(self, code: str, event: int | None, message: str) -> None:
        """A finding; its message quotes the stream, so it is made terminal-safe here."""
        self.report.findings.append(Finding(code, event, printable(message), self.codes[code][0]))

    def event(self, num: int, name: str, data: str) -> None:
        if self.before_json(num, name, data):
            return
        if name == "error":
            self.errored = True
            self.add("upstream-error", num, f"event: error: {clip(data)}")
            return
        if not data.strip():
            self.add("empty-event", num, "data line with nothing after it")
            return
        try:
            obj = decode_json(data)
        except ValueError as exc:  # a JSONDecodeError, or too deep, or an integer too long
            msg = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            self.add("malformed-json", num, f"{msg}: {clip(data)}")
            return
        if not isinstance(obj, dict):
            self.add("not-an-object", num, f"a JSON {type(obj).__name__}: {clip(data)}")
            return
        self.on_object(num, name, obj)

    def finish(self, total_events: int, problems: list[str]) -> Report:
        rep = self.report
        rep.events = total_events
        if total_events == 0:
            self.add("not-sse", None, "no data events")
        else:
            self.end()
        if problems:
            self.add("unterminated-event", total_events, problems[0])
        return rep

    def before_json(self, num: int, name: str, data: str) -> bool:
        return False

    @abstractmethod
    def on_object(self, num: int, name: str, obj: dict[str, Any]) -> None: ...

    @abstractmethod
    def end(self) -> None:
        """The stream's end: findings about what never came."""


# -- helpers --------------------------------------------------------------------------------------

_scan_once = json.JSONDecoder().scan_once


def loads(text: str) -> Any:
    """``json.loads`` without its per-call regex work (a payload is parsed per event); anything
    unusual (leading space, an error, deep nesting) goes through ``decode_json`` for the exact
    message. Raises only ``ValueError``."""
    try:
        obj, end = _scan_once(text, 0)
    except (StopIteration, RecursionError):
        return decode_json(text)
    if end != len(text) or json_too_deep(text, obj):
        return decode_json(text)  # the exact error (trailing data, too deep)
    return obj


def try_json(data: str) -> Any:
    try:
        return decode_json(data)
    except ValueError:
        return None


def snippet(data: str | bytes, limit: int = 80) -> str:
    """The start of some input, quoted, for a message: invalid UTF-8 as ``\\xff``, and nothing a
    terminal would act on (``errors.printable``)."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return "'" + printable(text[:limit]) + ("…" if len(text) > limit else "") + "'"


def clip(value: object, limit: int = 120) -> str:
    """A value from the stream, short, for a message: nothing a terminal would act on."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return printable(text if len(text) <= limit else text[: limit - 1] + "…")


def error_text(err: Any, raw: str) -> str:
    """The message of an error object (``{"message", "code"|"type"}``), or a snippet of the raw
    event when it has none."""
    if isinstance(err, dict) and isinstance(err.get("error"), dict | str):
        err = err["error"]
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg") or err.get("detail")
        if msg:
            code = err.get("code") or err.get("type")
            return printable(f"{msg} ({code})" if code else str(msg))
    if isinstance(err, str) and err:
        return printable(err)
    return snippet(raw, 200)


def envelope_error(body: Any, answer_key: str) -> tuple[str, str, Any] | None:
    """``(code, message, partial)`` of an ``{"error": …}`` envelope (OpenAI's, Anthropic's), the
    partial answer streamshim keeps in it included; ``None`` for a body that holds an answer
    (its ``answer_key``) or no error."""
    if not isinstance(body, dict) or answer_key in body or "error" not in body:
        return None
    err = body["error"]
    if isinstance(err, dict):
        code = err.get("code") or err.get("type") or "unknown"
        return str(code), str(err.get("message")), err.get("partial_response")
    return "unknown", str(err), None


def split_text(text: str, chunk_chars: int) -> list[str]:
    if chunk_chars <= 0:
        raise ValueError("chunk_chars must be positive")
    if not text:
        return [text]
    return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]


def json_event(obj: object, event: str = "message") -> Event:
    return Event(data=encode_json(obj), event=event)


# -- usage a stream did not carry -----------------------------------------------------------------


def prompt_chars(request: Any, keys: tuple[str, ...]) -> int:
    """Characters of the prompt a request sends: the text of ``keys`` (messages, prompt, tools…)
    as a chat template would put it before the model (message contents, tool definitions as
    JSON; roles left out)."""
    if not isinstance(request, dict):
        return 0
    return sum(len(_text_of(request.get(key))) for key in keys)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        if "role" in value:
            return "".join(_text_of(v) for k, v in value.items() if k != "role")
        if value.get("type") == "text" and isinstance(value.get("text"), str):
            return str(value["text"])
        return encode_json(value)
    return ""


def estimate_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)
