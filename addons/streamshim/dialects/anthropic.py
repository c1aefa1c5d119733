"""Anthropic Messages (``/v1/messages``): named SSE events (``message_start`` … ``message_stop``)
⇄ one ``message`` body.

A stream is ``message_start`` (the message with empty ``content``), then per content block
``content_block_start`` / ``content_block_delta``… / ``content_block_stop`` (each with its
``index``), ``message_delta`` (stop reason and cumulative usage), ``message_stop``; ``ping`` may
come anywhere, ``event: error`` ends a failed stream. ``Aggregator`` builds the body the upstream
would have sent without streaming from the wire dicts (never from SDK objects: they add fields the
wire does not have); ``Messages.synthesize`` streams a body back the way Anthropic does.
For any valid message ``x``: ``aggregate(synthesize(x)) == x``.

``Checker`` holds a stream to the protocol; each code's severity follows what the anthropic SDK's
own accumulator (``client.messages.stream(...)``, ``get_final_message()``) does with it (see
``CODES``; ``tests/test_anthropic.py`` runs the SDK on each case).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadResponse, MalformedEvent, TruncatedStream
from ..framing import Event, decode_json, encode_json
from .base import (
    DEFAULT_CHUNK_CHARS,
    FRAMING_CODES,
    Aggregator,
    Asked,
    Checker,
    Dialect,
    Meaning,
    Output,
    Repairer,
    Severity,
    ToolCall,
    Watch,
    clip,
    envelope_error,
    json_event,
    split_text,
    try_json,
)

STREAM_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)
# the delta types and the block field each one feeds
TEXT_DELTAS = {"text_delta": ("text", "text"), "thinking_delta": ("thinking", "thinking")}
BLOCK_OF_DELTA = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "thinking",
    "citations_delta": "text",
    "input_json_delta": "input",  # any block with an input: tool_use, server_tool_use, mcp_tool_use
}
# message_delta usage fields a synthesized stream sends (the cumulative counters, as Anthropic does)
DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "server_tool_use")
# Anthropic's HTTP status for the error types whose status carries a client's retry behaviour
ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429}

CODES: dict[str, tuple[Severity, str]] = {
    **FRAMING_CODES,
    "event-name-missing": ("error", "a data event without an event: line (the SDK drops it)"),
    "event-name-mismatch": ("warning", "the event: name differs from the payload's type"),
    "first-not-message-start": ("error", "the first event is not message_start"),
    "message-start-repeated": (
        "error",
        "a second message_start: two generations spliced into one stream",
    ),
    "index-not-next": ("error", "a content block starts with an index that is not the next one (0, 1, 2 …)"),
    "block-restarted": ("error", "content_block_start for an index already started"),
    "index-unknown": ("error", "a delta or content_block_stop for an index never started"),
    "delta-after-stop": ("warning", "a delta for a block already stopped"),
    "delta-wrong-block": ("error", "a delta type that does not fit its block (text_delta on tool_use)"),
    "delta-unknown": ("warning", "a delta type this checker does not know"),
    "tool-input-bad-json": (
        "error",
        "a tool's input_json_delta pieces do not parse as JSON at content_block_stop",
    ),
    "thinking-no-signature": ("warning", "a thinking block ends without a signature"),
    "block-not-stopped": ("warning", "a content block never got its content_block_stop"),
    "no-stop-reason": ("error", "no message_delta with a non-null stop_reason"),
    "no-message-stop": ("error", "the stream ended without message_stop"),
    "event-after-stop": ("error", "an event (other than ping) after message_stop"),
}


def takes_input(kind: Any, has_input: bool) -> bool:
    """A block whose ``input`` streams as ``input_json_delta`` (tool_use, server_tool_use, …)."""
    return has_input or (isinstance(kind, str) and kind.endswith("tool_use"))


def fits(dtype: Any, kind: Any, has_input: bool) -> bool:
    """Whether a delta type belongs on a block of this type (unknown delta types: yes)."""
    want = BLOCK_OF_DELTA.get(str(dtype))
    if want is None:
        return True
    return takes_input(kind, has_input) if want == "input" else want == kind


# -- aggregation ----------------------------------------------------------------------------------


def tool_input(pieces: Iterable[str]) -> Any:
    """The tool input that ``input_json_delta`` pieces spell (``{}`` for none, or only white
    space); ``ValueError`` when they do not parse. One rule for the aggregator, the checker and
    the repairer."""
    text = "".join(pieces)
    return decode_json(text) if text.strip() else {}


class _Block:
    """One content block being merged (the aggregator keeps them by ``index``)."""

    __slots__ = ("citations", "head", "input", "kind", "parts", "stopped")

    def __init__(self, head: dict[str, Any]) -> None:
        self.head = head  # the block as content_block_start sent it
        self.kind = head.get("type")
        self.parts: dict[str, list[str]] = {}  # text / thinking pieces
        self.input: list[str] | None = None  # input_json_delta pieces
        self.citations: list[Any] | None = None
        self.stopped = False

    def input_text(self) -> str:
        return "".join(self.input or ())

    def parsed_input(self) -> Any:
        return tool_input(self.input or ())

    def build(self, complete: bool) -> dict[str, Any]:
        out = dict(self.head)
        for key, pieces in self.parts.items():
            start = out.get(key)
            out[key] = (start if isinstance(start, str) else "") + "".join(pieces)
        if self.citations is not None:
            start = out.get("citations")
            out["citations"] = [*(start if isinstance(start, list) else []), *self.citations]
        if self.input is not None:
            try:
                out["input"] = self.parsed_input()
            except ValueError:
                if complete:
                    raise
                out["input"] = self.input_text()  # what arrived, for the partial answer
        return out


class MessagesAggregator(Aggregator):
    """Events of one Messages stream in, the ``message`` body out."""

    def __init__(self, dialect: Messages) -> None:
        super().__init__(dialect.framing)
        self.message: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.blocks: dict[int, _Block] = {}
        self.generated = 0  # deltas that carried generated tokens
        self.stopped_at: Event | None = None  # message_stop

    def before_json(self, ev: Event) -> bool:
        if ev.event == "error":
            obj = try_json(ev.data)
            err = obj.get("error", obj) if isinstance(obj, dict) else ev.data
            self.fail_upstream(ev, obj, err, "upstream sent an error event")
            return True
        return ev.event == "ping"

    def add(self, obj: dict[str, Any], ev: Event) -> None:
        kind = obj.get("type")
        if kind == "ping":
            self.chunks -= 1
            return
        if kind == "error":
            self.chunks -= 1
            self.fail_upstream(ev, obj, obj.get("error", obj), "upstream sent an error event")
            return
        if self.stopped_at is not None:
            what = "a second message_start" if kind == "message_start" else f"{kind!r}"
            self.fail(
                MalformedEvent,
                f"{what} after message_stop ({self.stopped_at.where()}): two generations spliced "
                "into one stream, or events the message does not hold",
                ev,
            )
            return
        if kind == "message_start":
            self._start(obj, ev)
        elif self.message is None:
            self.fail(MalformedEvent, f"{kind!r} before message_start: not the start of a message", ev)
        elif kind == "content_block_start":
            self._block_start(obj, ev)
        elif kind == "content_block_delta":
            self._delta(obj, ev)
        elif kind == "content_block_stop":
            self._block_stop(obj, ev)
        elif kind == "message_delta":
            self._message_delta(obj)
        elif kind == "message_stop":
            self.stopped_at = ev
            self.terminated = True
        else:  # an event type of a newer API version: not part of the message
            self.chunks -= 1
            self.problems.append(f"event type {kind!r} ignored at {ev.where()}")

    def _start(self, obj: dict[str, Any], ev: Event) -> None:
        if self.message is not None:
            self.fail(
                MalformedEvent,
                "a second message_start before message_stop: two generations spliced into one stream",
                ev,
            )
            return
        message = obj["message"]
        if not isinstance(message, dict):
            raise TypeError(f"message_start.message is {type(message).__name__}")
        self.message = dict(message)
        usage = message.get("usage")
        self.usage = dict(usage) if isinstance(usage, dict) else None
        for i, block in enumerate(message.get("content") or ()):  # blocks sent whole in the start
            if isinstance(block, dict):
                self.blocks[i] = _Block(dict(block))
                self.blocks[i].stopped = True

    def _index(self, obj: dict[str, Any]) -> int:
        index = obj["index"]
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index is {index!r}")
        return index

    def _block_start(self, obj: dict[str, Any], ev: Event) -> None:
        index = self._index(obj)
        head = obj["content_block"]
        if not isinstance(head, dict):
            raise TypeError(f"content_block is {type(head).__name__}")
        if index in self.blocks:
            self.fail(MalformedEvent, f"content block {index} started again", ev)
            return
        expected = max(self.blocks, default=-1) + 1
        if index != expected:
            self.problems.append(f"content block {index} started where {expected} was next, at {ev.where()}")
        self.blocks[index] = _Block(dict(head))

    def _delta(self, obj: dict[str, Any], ev: Event) -> None:
        index = self._index(obj)
        block = self.blocks.get(index)
        delta = obj["delta"]
        if not isinstance(delta, dict):
            raise TypeError(f"delta is {type(delta).__name__}")
        dtype = delta.get("type")
        if block is None:
            self.fail(MalformedEvent, f"{dtype} for content block {index}, which was never started", ev)
            return
        if block.stopped:
            self.problems.append(
                f"{dtype} for content block {index} after its content_block_stop, at {ev.where()}"
            )
        if not fits(dtype, block.kind, "input" in block.head):
            self.fail(
                MalformedEvent,
                f"{dtype} for content block {index}, a {block.kind!r} block: the delta does not fit",
                ev,
            )
            return
        if dtype in TEXT_DELTAS:
            key, field_ = TEXT_DELTAS[dtype]
            piece = delta[field_]
            if not isinstance(piece, str):
                raise TypeError(f"{dtype}.{field_} is {type(piece).__name__}")
            block.parts.setdefault(key, []).append(piece)
            self.generated += 1
        elif dtype == "input_json_delta":
            piece = delta["partial_json"]
            if not isinstance(piece, str):
                raise TypeError(f"partial_json is {type(piece).__name__}")
            if block.input is None:
                block.input = []
            block.input.append(piece)
            self.generated += bool(piece)
        elif dtype == "signature_delta":
            block.head["signature"] = delta["signature"]
        elif dtype == "citations_delta":
            if block.citations is None:
                block.citations = []
            block.citations.append(delta["citation"])
        else:  # a delta of a newer API version: strings appended to the block's field, others set
            for key, value in delta.items():
                if key == "type":
                    continue
                if isinstance(value, str) and isinstance(block.head.get(key), str | type(None)):
                    block.parts.setdefault(key, []).append(value)
                else:
                    block.head[key] = value
            self.problems.append(f"delta type {dtype!r} merged by its fields at {ev.where()}")

    def _block_stop(self, obj: dict[str, Any], ev: Event) -> None:
        index = self._index(obj)
        block = self.blocks.get(index)
        if block is None:
            self.fail(
                MalformedEvent, f"content_block_stop for content block {index}, which was never started", ev
            )
            return
        block.stopped = True
        if block.input is not None:
            try:
                block.parsed_input()
            except ValueError as exc:
                self.fail(
                    MalformedEvent,
                    f"content block {index} ({block.kind} {block.head.get('name')!r}): its input JSON does "
                    f"not parse at content_block_stop ({exc}): {clip(block.input_text(), 80)}",
                    ev,
                )

    def _message_delta(self, obj: dict[str, Any]) -> None:
        delta = obj.get("delta")
        assert self.message is not None
        if isinstance(delta, dict):
            for key, value in delta.items():
                if key != "type":
                    self.message[key] = value
        usage = obj.get("usage")
        if isinstance(usage, dict):
            # cumulative counts: they replace message_start's (a field left out or null keeps its value)
            if self.usage is None:
                self.usage = {}
            for key, value in usage.items():
                if value is not None or key not in self.usage:
                    self.usage[key] = value

    def end(self) -> None:
        if self.message is None:
            self.fail(
                TruncatedStream,
                f"stream ended after {self.decoder.events} events without message_start",
                None,
            )
            return
        open_blocks = [i for i, b in sorted(self.blocks.items()) if not b.stopped]
        if self.stopped_at is None:
            what = f"; content block(s) {', '.join(map(str, open_blocks))} still open" if open_blocks else ""
            if any(self.blocks[i].input is not None for i in open_blocks):
                what += " (cut inside a tool's input JSON)"
            self.fail(
                TruncatedStream,
                f"stream ended without message_stop after {self.decoder.events} events{what}",
                None,
            )
            return
        if self.message.get("stop_reason") is None:
            self.fail(TruncatedStream, "stream ended with message_stop but no stop_reason", None)
            return
        for i in open_blocks:
            self.problems.append(f"content block {i} never got its content_block_stop")
        # every block's input, not only the open ones': a delta after content_block_stop (a
        # problem, accepted) may have spoiled what parsed there
        for i, block in sorted(self.blocks.items()):
            if block.input is not None:
                try:
                    block.parsed_input()
                except ValueError as exc:
                    self.fail(
                        MalformedEvent,
                        f"content block {i} ({block.kind}): its input JSON does not parse at the end ({exc})",
                        None,
                    )
                    return

    def build(self, complete: bool) -> dict[str, Any]:
        out = dict(self.message or {"type": "message", "role": "assistant"})
        out["content"] = [self.blocks[i].build(complete) for i in sorted(self.blocks)]
        if self.usage is not None:
            out["usage"] = self.usage
        return out

    def generated_pieces(self) -> int:
        return self.generated


# -- synthesis ------------------------------------------------------------------------------------


def _check_message(resp: Any) -> list[dict[str, Any]]:
    if not isinstance(resp, dict):
        raise BadResponse(f"response is {type(resp).__name__}, not a JSON object")
    content = resp.get("content")
    if not isinstance(content, list):
        raise BadResponse("response has no 'content' list: not an Anthropic message")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadResponse(f"content[{i}] is not a content block (an object with a type)")
    return content


def _block_events(index: int, block: dict[str, Any], chunk_chars: int) -> Iterator[dict[str, Any]]:
    """One block as Anthropic streams it: the start (with empty text, thinking, signature or
    input), its deltas, the stop. Blocks without a streamed field arrive whole in the start."""

    def delta(d: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": d}

    kind = block["type"]
    head = dict(block)
    deltas: list[dict[str, Any]] = []
    if kind == "text" and isinstance(block.get("text"), str):
        head["text"] = ""
        cites = block.get("citations")
        if isinstance(cites, list):
            head["citations"] = []
            deltas += [delta({"type": "citations_delta", "citation": c}) for c in cites]
        deltas += [
            delta({"type": "text_delta", "text": p}) for p in split_text(block["text"], chunk_chars) if p
        ]
    elif kind == "thinking" and isinstance(block.get("thinking"), str):
        head["thinking"] = ""
        pieces = [p for p in split_text(block["thinking"], chunk_chars) if p]
        deltas += [delta({"type": "thinking_delta", "thinking": p}) for p in pieces]
        if "signature" in block:  # never in the start: a client takes the start's as final
            head["signature"] = ""
            deltas.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    elif "input" in block and kind.endswith("tool_use"):
        head["input"] = {}
        text = encode_json(block["input"])
        deltas.append(delta({"type": "input_json_delta", "partial_json": ""}))  # as Anthropic starts
        deltas += [
            delta({"type": "input_json_delta", "partial_json": p}) for p in split_text(text, chunk_chars)
        ]
    yield {"type": "content_block_start", "index": index, "content_block": head}
    yield from deltas
    yield {"type": "content_block_stop", "index": index}


def _message_events(
    resp: dict[str, Any], content: list[dict[str, Any]], chunk_chars: int
) -> Iterator[dict[str, Any]]:
    later = {k: resp[k] for k in ("stop_reason", "stop_sequence", "stop_details", "container") if k in resp}
    start = {k: v for k, v in resp.items() if k not in ("stop_details", "container")}
    start["content"] = []
    for key in ("stop_reason", "stop_sequence"):
        if key in start:
            start[key] = None
    usage = resp.get("usage")
    final_usage: dict[str, Any]
    if isinstance(usage, dict):
        out_tokens = usage.get("output_tokens")
        small = min(out_tokens, 1) if isinstance(out_tokens, int) else out_tokens
        start["usage"] = {**usage, "output_tokens": small} if "output_tokens" in usage else dict(usage)
        final_usage = {k: usage[k] for k in DELTA_USAGE if k in usage}
        if "output_tokens" in usage:
            final_usage["output_tokens"] = out_tokens
    else:
        # not a valid Messages body; SDK accumulators read usage from both events
        final_usage = {"output_tokens": 0}
        if "usage" not in start:
            start["usage"] = {"output_tokens": 0}
    yield {"type": "message_start", "message": start}
    for i, block in enumerate(content):
        yield from _block_events(i, block, chunk_chars)
    yield {"type": "message_delta", "delta": later, "usage": final_usage}
    yield {"type": "message_stop"}


# -- conformance ----------------------------------------------------------------------------------


@dataclass
class _Seen:
    kind: Any
    event: int
    has_input: bool
    stopped: int = 0
    json: list[str] = field(default_factory=list)
    signature: Any = None


class MessagesChecker(Checker):
    codes = CODES

    def __init__(self, dialect: Messages) -> None:
        super().__init__(dialect.name)
        self.started_at = 0  # message_start's event
        self.objects = 0
        self.blocks: dict[int, _Seen] = {}
        self.stop_reason: Any = None
        self.stop_at = 0

    def on_object(self, num: int, name: str, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        self.objects += 1
        if kind == "error":
            self.errored = True
            self.add("upstream-error", num, clip(obj.get("error", obj)))
            return
        if name == "message":
            self.add("event-name-missing", num, f"{kind!r} event without an event: line")
        elif name != kind:
            self.add("event-name-mismatch", num, f"event: {name}, payload type {kind!r}")
        if kind == "ping":
            return
        if self.objects == 1 and kind != "message_start":
            self.add("first-not-message-start", num, f"first event is {kind!r}")
        if self.stop_at:
            self.add("event-after-stop", num, f"{kind!r} after message_stop (event {self.stop_at})")
        if kind == "message_start":
            if self.started_at:
                self.add(
                    "message-start-repeated", num, f"message_start again (first at event {self.started_at})"
                )
            else:
                self.started_at = num
        elif kind == "content_block_start":
            self.block_start(num, obj)
        elif kind in ("content_block_delta", "content_block_stop"):
            self.block_event(num, kind, obj)
        elif kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and "stop_reason" in delta:
                self.stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self.stop_at = self.stop_at or num

    def block_start(self, num: int, obj: dict[str, Any]) -> None:
        index = obj.get("index")
        head = obj.get("content_block")
        head = head if isinstance(head, dict) else {}
        if not isinstance(index, int):
            self.add("index-unknown", num, f"content_block_start with index {index!r}")
            return
        if index in self.blocks:
            self.add(
                "block-restarted",
                num,
                f"block {index} started again (first at event {self.blocks[index].event})",
            )
            return
        if index != len(self.blocks):
            self.add("index-not-next", num, f"block index {index}, expected {len(self.blocks)}")
        kind = head.get("type")
        self.blocks[index] = _Seen(
            kind, num, takes_input(kind, "input" in head), signature=head.get("signature")
        )

    def block_event(self, num: int, kind: str, obj: dict[str, Any]) -> None:
        index = obj.get("index")
        st = self.blocks.get(index) if isinstance(index, int) else None
        if st is None:
            self.add("index-unknown", num, f"{kind} for block {index!r}, never started")
            return
        if kind == "content_block_stop":
            if not st.stopped:
                st.stopped = num
                self._stopped(num, index, st)
            return
        delta = obj.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        dtype = delta.get("type")
        if st.stopped:
            self.add("delta-after-stop", num, f"{dtype} for block {index}, stopped at event {st.stopped}")
        if not isinstance(dtype, str) or dtype not in BLOCK_OF_DELTA:
            self.add("delta-unknown", num, f"delta type {dtype!r} on a {st.kind!r} block")
        elif not fits(dtype, st.kind, st.has_input):
            self.add("delta-wrong-block", num, f"{dtype} on block {index}, a {st.kind!r} block")
        elif dtype == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            st.json.append(delta["partial_json"])
        elif dtype == "signature_delta":
            st.signature = delta.get("signature")

    def _stopped(self, num: int, index: int, st: _Seen) -> None:
        if st.has_input and st.json:
            try:
                tool_input(st.json)
            except ValueError as exc:
                text = "".join(st.json)
                self.add("tool-input-bad-json", num, f"block {index} ({st.kind}): {exc}: {clip(text)}")

    def end(self) -> None:
        for i, st in sorted(self.blocks.items()):
            if not st.stopped:
                self.add("block-not-stopped", None, f"block {i} ({st.kind}) was never stopped")
            if st.kind == "thinking" and not st.signature:
                self.add("thinking-no-signature", st.event, f"block {i}: signature {st.signature!r}")
        if self.errored:
            return
        if self.stop_reason is None:
            self.add("no-stop-reason", None, "no message_delta carried a stop_reason")
        if not self.stop_at:
            self.add("no-message-stop", None, "the stream ended without message_stop")


# -- the dialect ----------------------------------------------------------------------------------


# -- repair ---------------------------------------------------------------------------------------


class MessagesRepairer(Repairer):
    """For a stream client with ``repair``: what the anthropic SDK's accumulator gets wrong,
    mended from the stream itself:

    - ``event-name-missing``: an event without an ``event:`` line gets its payload's ``type`` as
      its name (the SDK drops unnamed events);
    - ``no-message-stop``: a clean end after a ``message_delta`` with a ``stop_reason`` (and no
      tool input cut short) gets ``message_stop``;
    - ``truncated``: any other clean end without ``message_stop`` (no stop reason, a tool's input
      JSON cut) gets an ``error`` event, which the SDK raises on, instead of a quiet end it would
      take as a complete message (it even heals cut tool JSON).
    """

    def __init__(self, dialect: Messages) -> None:
        super().__init__(dialect.framing)
        self.dialect = dialect
        self.stop_reason = False
        self.inputs: dict[int, list[str]] = {}  # open tool blocks: their input_json_delta pieces
        self.ended = False  # message_stop or an error arrived

    def event(self, block: bytes) -> bytes:
        if self.ended:
            return block
        ev = self.decode(block)
        obj = try_json(ev.data) if ev is not None else None
        if ev is None or not isinstance(obj, dict):
            if ev is not None and ev.event == "error":
                self.ended = True
            return block
        kind = obj.get("type")
        changed = False
        if ev.event == "message" and isinstance(kind, str) and kind in STREAM_EVENTS:
            ev.event = kind
            self.note("event-name-missing")
            changed = True
        if kind in ("message_stop", "error") or ev.event == "error":
            self.ended = True
        elif kind == "message_delta":
            delta = obj.get("delta")
            self.stop_reason |= isinstance(delta, dict) and delta.get("stop_reason") is not None
        elif kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            self._block(kind, obj)
        return self.encode(ev, obj) if changed else block

    def _block(self, kind: str, obj: dict[str, Any]) -> None:
        index = obj.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            return
        if kind == "content_block_start":
            cb = obj.get("content_block")
            if isinstance(cb, dict) and takes_input(cb.get("type"), "input" in cb):
                self.inputs[index] = []
        elif kind == "content_block_stop":
            self.inputs.pop(index, None)
        elif index in self.inputs:
            delta = obj.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("partial_json"), str):
                self.inputs[index].append(delta["partial_json"])

    def end(self, clean: bool) -> bytes:
        if not clean or self.ended:
            return b""
        cut_tool = [i for i, parts in self.inputs.items() if not _parses(parts)]
        if self.stop_reason and not cut_tool:
            self.note("no-message-stop")
            return self.framing.encode([json_event({"type": "message_stop"}, "message_stop")])
        self.note("truncated")
        what = f"a tool's input cut short (block {cut_tool[0]})" if cut_tool else "no stop_reason"
        message = f"upstream stream ended without message_stop, {what}: it was cut short"
        body = self.dialect.error_body(message, "truncated")
        return self.framing.encode([json_event(body, "error")])


def _parses(pieces: list[str]) -> bool:
    try:
        tool_input(pieces)
    except ValueError:
        return False
    return True


class Messages(Dialect):
    """Anthropic Messages: ``message_start`` … ``message_stop`` streams ⇄ one ``message``."""

    name = "anthropic"
    title = "Anthropic Messages"
    path_suffixes = ("/v1/messages",)
    terminal_name = "message_stop"
    # terminal: matched in the stream's last event; the payload's type, which JSON text cannot fake
    watch = Watch(
        terminal=(b'"type":"message_stop"', b'"type": "message_stop"'),
        errors=(b"event: error", b"event:error", b'"type":"error"', b'"type": "error"'),
    )
    codes = CODES

    def detect(self, payload: Any) -> int:
        if not isinstance(payload, dict) or "object" in payload:
            return 0
        kind = payload.get("type")
        if not isinstance(kind, str):  # absent, or a value no event has ([], 1, …)
            return 0
        if kind == "message" and isinstance(payload.get("content"), list):
            return 2
        if kind in STREAM_EVENTS and kind not in ("ping", "error"):
            return 2 if kind != "message_stop" else 1
        if kind == "error" and isinstance(payload.get("error"), dict) and "type" in payload["error"]:
            return 1
        return 0

    # -- the request ------------------------------------------------------------------------
    def asked(self, body: dict[str, Any]) -> Asked | None:
        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            return None
        return Asked(stream)

    def ask_stream(self, body: dict[str, Any], asked: Asked) -> bool:
        body["stream"] = True  # usage is always in message_start and message_delta
        return False

    def ask_json(self, body: dict[str, Any]) -> None:
        body["stream"] = False

    # -- conversions ------------------------------------------------------------------------
    def repairer(self, asked: Asked, *, strip_usage: bool, repair: bool) -> Repairer | None:
        return MessagesRepairer(self) if repair else None

    def aggregator(self, asked: Asked | None = None) -> MessagesAggregator:
        return MessagesAggregator(self)

    def synthesize(
        self, response: Any, *, usage: bool = False, chunk_chars: int = DEFAULT_CHUNK_CHARS
    ) -> Iterator[Event]:
        content = _check_message(response)  # now: the generator below runs only when read
        if chunk_chars <= 0:
            raise ValueError("chunk_chars must be positive")
        return (json_event(obj, obj["type"]) for obj in _message_events(response, content, chunk_chars))

    def checker(self, *, usage_asked: bool | None = None, n: int | None = None) -> MessagesChecker:
        return MessagesChecker(self)

    # -- meaning and errors -----------------------------------------------------------------
    def meaning(self, response: dict[str, Any]) -> Meaning:
        out = Meaning(
            ident={k: response[k] for k in ("model", "id") if response.get(k)},
            outputs_label="message",
            finish_label="stop_reason",
        )
        err = self.error_of(response)
        if err is not None:
            out.error = err[1]
        content = response.get("content")
        out.has_outputs = isinstance(content, list)
        if not out.has_outputs:
            return out
        texts: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        results: list[str] = []
        output = Output(0, finish=response.get("stop_reason"))
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                texts.setdefault("text", []).append(str(block.get("text") or ""))
                if isinstance(block.get("citations"), list) and block["citations"]:
                    counts["citations"] = counts.get("citations", 0) + len(block["citations"])
            elif kind == "thinking":
                texts.setdefault("thinking", []).append(str(block.get("thinking") or ""))
            elif kind == "redacted_thinking":
                counts["redacted_thinking"] = counts.get("redacted_thinking", 0) + 1
            elif takes_input(kind, "input" in block):
                other = kind if kind != "tool_use" else None
                output.tool_calls.append(
                    ToolCall(block.get("name"), block.get("input"), block.get("id"), other)
                )
            else:  # *_tool_result and other whole blocks: their kind and size, not their ids
                inner = block.get("content")
                size = f"{len(inner)} item(s)" if isinstance(inner, list) else clip(inner, 60)
                results.append(f"{kind}: {size}")
        if "thinking" in texts:
            output.parts.append(("reasoning", "thinking", "".join(texts["thinking"])))
        if counts.get("redacted_thinking"):
            output.parts.append(("reasoning", "redacted_thinking", f"{counts['redacted_thinking']} block(s)"))
        output.parts.append(("text", "text", "".join(texts.get("text", ()))))
        if counts.get("citations"):
            output.parts.append(("text", "citations", counts["citations"]))
        if results:
            output.parts.append(("text", "tool_results", results))
        out.outputs.append(output)
        out.usage = self.usage_of(response)
        return out

    def error_body(
        self, message: str, code: str, *, partial: Any = None, upstream_error: Any = None
    ) -> dict[str, Any]:
        kind = "api_error"
        if isinstance(upstream_error, dict) and isinstance(upstream_error.get("type"), str):
            kind = upstream_error["type"]
        err: dict[str, Any] = {"type": kind, "message": f"streamshim: {message}", "code": code}
        if upstream_error is not None:
            err["upstream_error"] = upstream_error
        if partial is not None:
            err["partial_response"] = partial
        return {"type": "error", "error": err}

    def error_status(self, upstream_error: Any) -> int:
        """529 for an upstream's ``overloaded_error``, 429 for ``rate_limit_error`` (the status
        Anthropic answers them with, so a client retries and reports them as it would a direct
        call's); 502 for everything else."""
        if isinstance(upstream_error, dict):
            return ERROR_STATUS.get(str(upstream_error.get("type")), 502)
        return 502

    def error_of(self, body: Any) -> tuple[str, str, Any] | None:
        return envelope_error(body, "content")

    # -- usage ------------------------------------------------------------------------------
    prompt_keys = ("system", "messages", "tools")
    usage_words = ("input", "output")

    def usage_record(self, prompt: int, completion: int) -> dict[str, Any]:
        return {"input_tokens": prompt, "output_tokens": completion}


DIALECT = Messages()
