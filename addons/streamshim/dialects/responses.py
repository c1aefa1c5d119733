"""OpenAI Responses API (``/v1/responses``): ``response.*`` event streams ⇄ one ``response`` object.

The stream is a grammar of named SSE events (``event:`` equal to the payload's ``type``), each
with a ``sequence_number``: ``response.created`` and ``response.in_progress`` carry the response
shell; per output item ``response.output_item.added`` (a shell), its parts and deltas
(``content_part.added``, ``output_text.delta`` … ``output_text.done``, ``content_part.done``;
``function_call_arguments.delta``/``.done``; reasoning summaries and raw reasoning text;
refusals; annotations) and ``response.output_item.done`` (the whole item); then one terminal
event carrying the whole response: ``response.completed`` or ``response.incomplete`` (a normal
answer), ``response.failed`` (an error), or an ``error`` event. There is no ``[DONE]``.

- ``ResponsesAggregator``: the body is the terminal event's ``response``. Items seen in
  ``response.output_item.done`` are kept by ``output_index`` (item ids may rotate between events)
  and used when the terminal ``output`` is empty (the Codex backend sends ``output: []``); the
  terminal's own copy wins otherwise (reasoning ``encrypted_content`` is re-encrypted in every
  event). Deltas are merged per item and part, for what a broken stream had delivered.
- ``synthesize``: the whole grammar, so that strict clients (the openai SDK's
  ``ResponseStreamState``) accept it; item types without a delta grammar go out as ``added`` +
  ``done`` carrying the whole item. For any valid response ``x``:
  ``aggregate(synthesize(x)) == x``.
- ``ResponsesChecker``: the grammar's contract; severities decided by running the openai SDK's
  stream helper (2.x and 3.x) on crafted streams (``tests/test_responses_sdk.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadResponse, TruncatedStream
from ..framing import Event, decode_json
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
    json_event,
    split_text,
    try_json,
)
from .openai import openai_error_body

CREATED = "response.created"
LIFECYCLE = frozenset({CREATED, "response.in_progress", "response.queued"})
TERMINAL = {"response.completed": "completed", "response.incomplete": "incomplete"}
FAILED = "response.failed"
ITEM_ADDED = "response.output_item.added"
ITEM_DONE = "response.output_item.done"

# Events that stream a text field of an item: type → (the item's list of parts, or None for a
# field of the item itself; the event's index key; the text key; the type of a part it opens).
# ``DELTAS`` append to it, ``DONES`` carry the whole text.
_Spec = tuple[str | None, str | None, str, str | None]
DELTAS: dict[str, _Spec] = {
    "response.output_text.delta": ("content", "content_index", "text", "output_text"),
    "response.refusal.delta": ("content", "content_index", "refusal", "refusal"),
    "response.reasoning_summary_text.delta": ("summary", "summary_index", "text", "summary_text"),
    "response.reasoning_text.delta": ("content", "content_index", "text", "reasoning_text"),
    "response.function_call_arguments.delta": (None, None, "arguments", None),
    "response.custom_tool_call_input.delta": (None, None, "input", None),
}
DONES: dict[str, _Spec] = {t.removesuffix(".delta") + ".done": spec for t, spec in DELTAS.items()}
# Events that open or close one part of an item: type → (the item's list of parts, index key).
PART_ADDED = {
    "response.content_part.added": ("content", "content_index"),
    "response.reasoning_summary_part.added": ("summary", "summary_index"),
}
PART_DONE = {
    "response.content_part.done": ("content", "content_index"),
    "response.reasoning_summary_part.done": ("summary", "summary_index"),
}
# The item type a streamed text belongs to (for an event whose item was never added).
_ITEM_OF = {
    t: kind
    for kinds, kind in (
        (("output_text", "refusal", "content_part"), "message"),
        (("reasoning_summary_text", "reasoning_text", "reasoning_summary_part"), "reasoning"),
        (("function_call_arguments",), "function_call"),
        (("custom_tool_call_input",), "custom_tool_call"),
    )
    for t in kinds
}
# Events of the grammar that name an output item (they carry output_index and item_id)
ITEM_EVENTS = frozenset({*DELTAS, *DONES, *PART_ADDED, *PART_DONE, "response.output_text.annotation.added"})
# … and of those, the ones that name a part by index (content_index / summary_index)
INDEXED_EVENTS: dict[str, str] = {
    **{t: spec[1] for t, spec in (*DELTAS.items(), *DONES.items()) if spec[1]},
    **{t: key for t, (_, key) in (*PART_ADDED.items(), *PART_DONE.items())},
    "response.output_text.annotation.added": "content_index",
}

CODES: dict[str, tuple[Severity, str]] = {
    **FRAMING_CODES,
    "type-missing": (
        "error",
        "a payload without type, or a lifecycle event without response (the SDK drops it)",
    ),
    "type-mismatch": ("warning", "the event: name differs from the payload's type (the SDK reads the type)"),
    "first-not-created": ("error", "the first event is not response.created (the SDK raises)"),
    "created-no-output": (
        "error",
        "response.created has no output list (openai 2.x raises on the first item)",
    ),
    "response-id-changed": ("error", "the response id differs between lifecycle events (openai 3.x raises)"),
    "sequence-missing": ("warning", "an event without sequence_number (the SDK ignores it)"),
    "sequence-repeated": ("warning", "sequence_number equal to the previous event's (the SDK ignores it)"),
    "sequence-decreasing": (
        "warning",
        "sequence_number lower than the previous event's (the SDK ignores it)",
    ),
    "sequence-gap": ("warning", "sequence_number not 0 first, or not the previous one plus 1"),
    "output-index-missing": ("error", "an item event without output_index (the SDK raises)"),
    "output-index-gap": ("error", "a new item's output_index is not the next one (openai 2.x raises)"),
    "content-index-missing": ("error", "a part event without content_index / summary_index (the SDK raises)"),
    "item-id-missing": ("warning", "an item event without item_id (the SDK goes by output_index)"),
    "item-id-mismatch": ("warning", "an event's item_id is not its item's id (the SDK goes by output_index)"),
    "item-id-changed": (
        "error",
        "output_item.done has another id than output_item.added (openai 3.x raises)",
    ),
    "item-added-twice": ("error", "output_item.added again for an output_index (the SDK raises)"),
    "event-before-added": (
        "error",
        "an event for an output_index before its output_item.added (the SDK raises)",
    ),
    "event-after-done": (
        "warning",
        "an event for an item after its output_item.done (the SDK still adds it)",
    ),
    "done-differs": ("error", "a *.done text or arguments, or the done item, differs from the deltas"),
    "arguments-not-json": ("error", "a function call's arguments do not parse as JSON"),
    "item-unfinished": ("error", "an item never done and not in the terminal output (openai 3.x raises)"),
    "terminal-output-differs": (
        "error",
        "the terminal output disagrees with the items done (the SDK returns it)",
    ),
    "status-mismatch": ("warning", "the terminal event's type and its response's status disagree"),
    "response-failed": ("error", "response.failed: the upstream failed the response"),
    "no-terminal": ("error", "the stream ended without response.completed / .incomplete / .failed"),
    "event-after-terminal": ("error", "events after the terminal event (the SDK hands their deltas on)"),
}


# -- aggregation ----------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _item_type(kind: str) -> str:
    """The item type an item event belongs to, from its name (``response.output_text.delta``)."""
    parts = kind.split(".")
    return _ITEM_OF.get(parts[1] if len(parts) > 2 else "", "message")


class ResponsesAggregator(Aggregator):
    """``response.*`` events in, the ``response`` object out (see the module's docstring)."""

    def __init__(self, dialect: Responses) -> None:
        super().__init__(dialect.framing)
        self.lifecycle: dict[str, Any] | None = None  # the last created/in_progress response
        self.terminal: dict[str, Any] | None = None  # completed / incomplete
        self.terminal_type: str | None = None
        self.failed: dict[str, Any] | None = None
        self.items: dict[int, dict[str, Any]] = {}  # output_index → the item as added (its parts opened)
        self.done: dict[int, dict[str, Any]] = {}  # output_index → the item as done
        # output_index → (parts key, part index, text key, part type) → the pieces streamed into it
        self.texts: dict[int, dict[tuple[str | None, int, str, str | None], list[str]]] = {}
        self.ids: dict[str, int] = {}  # item id → output_index (for events without output_index)
        self.last: int | None = None  # the item added last
        self.deltas = 0

    # -- events -------------------------------------------------------------------------------
    def before_json(self, ev: Event) -> bool:
        if ev.event == "error":
            obj = try_json(ev.data)
            self.fail_upstream(ev, obj, _error_of_event(obj, ev.data), "upstream sent an error event")
            return True
        return False

    def add(self, obj: dict[str, Any], ev: Event) -> None:
        kind = obj.get("type")
        if not isinstance(kind, str):
            kind = ev.event
        if self.terminal is not None:
            self.chunks -= 1
            self.problems.append(f"{kind} after the terminal {self.terminal_type} ignored at {ev.where()}")
            return
        if kind in DELTAS:
            self.deltas += 1
            self._text(self._index(obj, kind), obj, DELTAS[kind], kind, whole=False)
        elif kind in DONES:
            self._text(self._index(obj, kind), obj, DONES[kind], kind, whole=True)
        elif kind == ITEM_ADDED:
            self._added(obj)
        elif kind == ITEM_DONE:
            self._done(obj)
        elif kind in PART_ADDED or kind in PART_DONE:
            self._part(obj, kind)
        elif kind in TERMINAL:
            self.terminal = _response_of(obj, kind)
            self.terminal_type = kind
            self.terminated = True
        elif kind == FAILED:
            self.failed = _response_of(obj, kind)
            err = self.failed.get("error")
            self.fail_upstream(ev, obj, err if err else self.failed, "upstream sent response.failed")
        elif kind == "error":
            self.chunks -= 1
            self.fail_upstream(ev, obj, _error_of_event(obj, ev.data), "upstream sent an error event")
        elif kind in LIFECYCLE:
            self.lifecycle = _response_of(obj, kind)
        # anything else (web_search_call.searching, annotation.added, …): the done item carries it

    def _index(self, obj: dict[str, Any], kind: str) -> int:
        """The output_index an item event is about: its own, else its item_id's, else the item
        added last (llama-server sends neither output_index nor content_index)."""
        index = _int(obj.get("output_index"))
        if index is None:
            item_id = obj.get("item_id")
            index = self.ids.get(item_id) if isinstance(item_id, str) else None
        if index is None:
            index = self.last if self.last is not None else 0
        if index not in self.items:  # an event before its item: a placeholder keeps what it carries
            self.items[index] = {"type": _item_type(kind)}
            self.last = index
        return index

    def _added(self, obj: dict[str, Any]) -> None:
        item = obj["item"]
        if not isinstance(item, dict):
            raise TypeError(f"item is {type(item).__name__}")
        index = _int(obj.get("output_index"))
        if index is None:
            index = max(self.items, default=-1) + 1
        self.items[index] = dict(item)
        self.texts.pop(index, None)
        self.done.pop(index, None)
        if isinstance(item.get("id"), str):
            self.ids[item["id"]] = index
        self.last = index

    def _done(self, obj: dict[str, Any]) -> None:
        item = obj["item"]
        if not isinstance(item, dict):
            raise TypeError(f"item is {type(item).__name__}")
        index = _int(obj.get("output_index"))
        if index is None:
            found = self.ids.get(item["id"]) if isinstance(item.get("id"), str) else None
            index = found if found is not None else (self.last if self.last is not None else 0)
        self.done[index] = item
        self.items.setdefault(index, dict(item))

    def _part(self, obj: dict[str, Any], kind: str) -> None:
        index = self._index(obj, kind)
        key, index_key = PART_ADDED.get(kind) or PART_DONE[kind]
        part = obj.get("part")
        if not isinstance(part, dict):
            return
        item = self.items[index]
        parts = item.get(key)
        parts = list(parts) if isinstance(parts, list) else []
        at = _int(obj.get(index_key))
        if at is None:
            at = len(parts) if kind in PART_ADDED else max(len(parts) - 1, 0)
        if not 0 <= at <= len(parts):
            self.problems.append(f"{kind}: {index_key} {at} out of range, ignored")
            return
        if at == len(parts):
            parts.append(part)
        else:
            parts[at] = part
        item[key] = parts
        if kind in PART_DONE:  # the whole part: what was streamed into it is in it
            texts = self.texts.get(index, {})
            for slot in [s for s in texts if s[0] == key and s[1] == at]:
                del texts[slot]

    def _text(self, index: int, obj: dict[str, Any], spec: _Spec, kind: str, whole: bool) -> None:
        key, index_key, text_key, part_type = spec
        value = obj.get(text_key if whole else "delta")
        if not isinstance(value, str):
            return
        at = 0
        if key is not None:
            parts = self.items[index].get(key)
            count = len(parts) if isinstance(parts, list) else 0
            raw = _int(obj.get(index_key)) if index_key else None
            at = raw if raw is not None else max(count - 1, 0)
            opened = [slot[1] + 1 for slot in self.texts.get(index, {}) if slot[0] == key]
            if not 0 <= at <= max([count, *opened]):
                self.problems.append(f"{kind}: {index_key} {at} out of range, ignored")
                return
        pieces = self.texts.setdefault(index, {}).setdefault((key, at, text_key, part_type), [])
        if whole:
            pieces[:] = [value]
        else:
            pieces.append(value)

    # -- the end ------------------------------------------------------------------------------
    def end(self) -> None:
        if self.terminal is not None:
            if not self.terminal.get("output") and self.items:
                self.problems.append(
                    f"the terminal {self.terminal_type} has an empty output: the {len(self.items)} item(s) "
                    "of the stream's output_item events are used"
                )
            return
        open_items = [i for i in sorted(self.items) if i not in self.done]
        what = ""
        if open_items:
            what = ", unfinished: " + ", ".join(
                f"item {i} ({self.items[i].get('type')})" for i in open_items[:5]
            )
        self.fail(
            TruncatedStream,
            f"stream ended without a terminal event (response.completed / response.incomplete) "
            f"after {self.decoder.events} events{what}",
            None,
        )

    def generated_pieces(self) -> int:
        return self.deltas

    def build(self, complete: bool) -> dict[str, Any]:
        resp = dict(self.terminal or self.failed or self.lifecycle or {})
        if not resp.get("output") and self.items:
            resp["output"] = [self._item(i) for i in sorted(self.items)]
        elif "output" not in resp:
            resp["output"] = []
        return resp

    def _item(self, index: int) -> dict[str, Any]:
        """An item as the stream left it: as done, else as added with what was streamed into it."""
        done = self.done.get(index)
        if done is not None:
            return done
        item = dict(self.items[index])
        for (key, at, text_key, part_type), pieces in self.texts.get(index, {}).items():
            text = "".join(pieces)
            if key is None:
                before = item.get(text_key)
                item[text_key] = (before if isinstance(before, str) else "") + text
                continue
            parts = item.get(key)
            parts = [dict(p) if isinstance(p, dict) else p for p in parts] if isinstance(parts, list) else []
            while len(parts) <= at:
                parts.append({"type": part_type, text_key: ""})
            part = parts[at] if isinstance(parts[at], dict) else {"type": part_type}
            before = part.get(text_key)
            part[text_key] = (before if isinstance(before, str) else "") + text
            parts[at] = part
            item[key] = parts
        return item


def _response_of(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    resp = obj.get("response")
    if not isinstance(resp, dict):
        raise TypeError(f"{kind} has no response object")
    return resp


def _error_of_event(obj: Any, raw: str) -> Any:
    """The error an ``error`` event carries, in both shapes seen in the wild:
    ``{"type": "error", "code", "message", "param"}`` and ``{"type": "error", "error": {…}}``."""
    if not isinstance(obj, dict):
        return raw
    inner = obj.get("error")
    if isinstance(inner, dict | str) and inner:
        return inner
    return {k: v for k, v in obj.items() if k not in ("type", "sequence_number")}


# -- synthesis ------------------------------------------------------------------------------------


def check_response(resp: Any) -> list[dict[str, Any]]:
    """The output items of a Responses body, or ``BadResponse`` naming what is missing."""
    if not isinstance(resp, dict):
        raise BadResponse(f"response is {type(resp).__name__}, not a JSON object")
    output = resp.get("output")
    if not isinstance(output, list):
        raise BadResponse("response has no 'output' list: not a Responses API response")
    for i, item in enumerate(output):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise BadResponse(f"output[{i}] is not an item with a type")
    return output


class _Synth:
    """The event grammar of one response, every event numbered (``sequence_number`` from 0)."""

    def __init__(self, resp: dict[str, Any], chunk_chars: int) -> None:
        self.resp = resp
        self.chunk_chars = chunk_chars
        self.seq = 0

    def event(self, kind: str, **fields: Any) -> Event:
        payload = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return json_event(payload, kind)

    def pieces(self, text: str) -> list[str]:
        return [p for p in split_text(text, self.chunk_chars) if p]

    def events(self) -> Iterator[Event]:
        resp = self.resp
        shell = {**resp, "status": "in_progress", "output": []}
        for key in ("usage", "completed_at", "incomplete_details", "error"):
            if key in resp:
                shell[key] = None
        yield self.event(CREATED, response=shell)
        yield self.event("response.in_progress", response=shell)
        for i, item in enumerate(resp["output"]):
            kind = item["type"]
            if kind == "message" and isinstance(item.get("content"), list):
                yield from self.message(i, item)
            elif kind == "function_call" and isinstance(item.get("arguments"), str):
                yield from self.function_call(i, item)
            elif kind == "reasoning" and isinstance(item.get("summary", []), list):
                yield from self.reasoning(i, item)
            else:  # no delta grammar (hosted tools, MCP, custom tool calls …): the whole item, twice
                yield self.event(ITEM_ADDED, output_index=i, item=item)
                yield self.event(ITEM_DONE, output_index=i, item=item)
        terminal = {"incomplete": "response.incomplete", "failed": FAILED}.get(str(resp.get("status")))
        yield self.event(terminal or "response.completed", response=resp)

    @staticmethod
    def shell(item: dict[str, Any], **empty: Any) -> dict[str, Any]:
        """The item as ``output_item.added`` opens it: what streams after it emptied, in progress."""
        out = {**item, **empty}
        if "status" in item:
            out["status"] = "in_progress"
        return out

    def message(self, i: int, item: dict[str, Any]) -> Iterator[Event]:
        ids = {"item_id": item.get("id"), "output_index": i}
        yield self.event(ITEM_ADDED, output_index=i, item=self.shell(item, content=[]))
        for j, part in enumerate(item["content"]):
            at = {**ids, "content_index": j}
            kind = part.get("type") if isinstance(part, dict) else None
            key = {"output_text": "text", "refusal": "refusal"}.get(str(kind))
            text = part.get(key) if key and isinstance(part, dict) else None
            if not isinstance(text, str):  # a part without a delta grammar: whole, twice
                yield self.event("response.content_part.added", **at, part=part)
                yield self.event("response.content_part.done", **at, part=part)
                continue
            opened = {
                k: ("" if k == key else [] if k in ("annotations", "logprobs") else v)
                for k, v in part.items()
            }
            yield self.event("response.content_part.added", **at, part=opened)
            if kind == "output_text":
                for piece in self.pieces(text):
                    yield self.event("response.output_text.delta", **at, delta=piece, logprobs=[])
                annotations = part.get("annotations")
                for k, annotation in enumerate(annotations if isinstance(annotations, list) else []):
                    yield self.event(
                        "response.output_text.annotation.added",
                        **at,
                        annotation_index=k,
                        annotation=annotation,
                    )
                logprobs = part.get("logprobs")
                yield self.event("response.output_text.done", **at, text=text, logprobs=logprobs or [])
            else:
                for piece in self.pieces(text):
                    yield self.event("response.refusal.delta", **at, delta=piece)
                yield self.event("response.refusal.done", **at, refusal=text)
            yield self.event("response.content_part.done", **at, part=part)
        yield self.event(ITEM_DONE, output_index=i, item=item)

    def function_call(self, i: int, item: dict[str, Any]) -> Iterator[Event]:
        ids = {"item_id": item.get("id"), "output_index": i}
        yield self.event(ITEM_ADDED, output_index=i, item=self.shell(item, arguments=""))
        args = item["arguments"]
        for piece in self.pieces(args):
            yield self.event("response.function_call_arguments.delta", **ids, delta=piece)
        yield self.event("response.function_call_arguments.done", **ids, arguments=args)
        yield self.event(ITEM_DONE, output_index=i, item=item)

    def reasoning(self, i: int, item: dict[str, Any]) -> Iterator[Event]:
        ids = {"item_id": item.get("id"), "output_index": i}
        content = item.get("content")
        empty: dict[str, Any] = {"summary": []} if "summary" in item else {}
        if isinstance(content, list):
            empty["content"] = []
        yield self.event(ITEM_ADDED, output_index=i, item=self.shell(item, **empty))
        for k, part in enumerate(item.get("summary") or []):
            text = part.get("text") if isinstance(part, dict) else None
            if not isinstance(text, str):
                continue  # the done item carries it
            at = {**ids, "summary_index": k}
            yield self.event("response.reasoning_summary_part.added", **at, part={**part, "text": ""})
            for piece in self.pieces(text):
                yield self.event("response.reasoning_summary_text.delta", **at, delta=piece)
            yield self.event("response.reasoning_summary_text.done", **at, text=text)
            yield self.event("response.reasoning_summary_part.done", **at, part=part)
        for j, part in enumerate(content if isinstance(content, list) else []):
            text = part.get("text") if isinstance(part, dict) else None
            if not (isinstance(text, str) and part.get("type") == "reasoning_text"):
                continue  # the done item carries it
            at = {**ids, "content_index": j}
            for piece in self.pieces(text):
                yield self.event("response.reasoning_text.delta", **at, delta=piece)
            yield self.event("response.reasoning_text.done", **at, text=text)
        yield self.event(ITEM_DONE, output_index=i, item=item)


# -- conformance ----------------------------------------------------------------------------------


@dataclass
class _Seen:
    kind: Any
    id: Any
    added_at: int
    done_at: int = 0
    done_item: dict[str, Any] | None = None
    # (the item's list of parts or None, text key, part index) → the deltas streamed into it
    texts: dict[tuple[str | None, str, int | None], list[str]] = field(default_factory=dict)


class ResponsesChecker(Checker):
    """The event grammar of Responses streams."""

    codes = CODES

    def __init__(self, dialect: Responses) -> None:
        super().__init__(dialect.name)
        self.objects = 0
        self.seq: int | None = None
        self.response_id: Any = None
        self.items: dict[int, _Seen] = {}
        self.ids: dict[Any, int] = {}
        self.terminal_at = 0
        self.terminal: dict[str, Any] | None = None
        self.terminal_type = ""

    def on_object(self, num: int, name: str, obj: dict[str, Any]) -> None:
        self.objects += 1
        kind = obj.get("type")
        if not isinstance(kind, str):
            self.add("type-missing", num, f"no type: {clip(obj)}")
            kind = name
        elif name != "message" and name != kind:
            self.add("type-mismatch", num, f"event: {name}, type {kind!r}")
        if self.terminal_at:
            self.add(
                "event-after-terminal", num, f"{kind} after {self.terminal_type} (event {self.terminal_at})"
            )
            return
        if self.objects == 1 and kind != CREATED:
            self.add("first-not-created", num, f"first event is {kind}")
        self.sequence(num, obj)
        if kind == "error":
            self.errored = True
            self.add("upstream-error", num, clip(_error_of_event(obj, "")))
        elif kind in LIFECYCLE or kind in TERMINAL or kind == FAILED:
            self.lifecycle(num, kind, obj)
        elif kind == ITEM_ADDED:
            self.added(num, obj)
        elif kind == ITEM_DONE:
            self.item_done(num, obj)
        elif kind in ITEM_EVENTS:
            self.item_event(num, kind, obj)

    def sequence(self, num: int, obj: dict[str, Any]) -> None:
        seq = _int(obj.get("sequence_number"))
        if seq is None:
            self.add("sequence-missing", num, "no sequence_number")
            return
        prev = self.seq
        if prev is None:
            if seq != 0:
                self.add("sequence-gap", num, f"first sequence_number is {seq}, not 0")
        elif seq == prev:
            self.add("sequence-repeated", num, f"sequence_number {seq} again")
        elif seq < prev:
            self.add("sequence-decreasing", num, f"sequence_number {seq} after {prev}")
        elif seq != prev + 1:
            self.add("sequence-gap", num, f"sequence_number {seq} after {prev}")
        self.seq = seq

    def lifecycle(self, num: int, kind: str, obj: dict[str, Any]) -> None:
        resp = obj.get("response")
        if not isinstance(resp, dict):
            self.add("type-missing", num, f"{kind} without a response object")
            return
        rid = resp.get("id")
        if self.response_id is None:
            self.response_id = rid
        elif rid != self.response_id:
            self.add("response-id-changed", num, f"{kind}: id {rid!r}, was {self.response_id!r}")
        if kind == CREATED and not isinstance(resp.get("output"), list):
            self.add("created-no-output", num, "response.created's response has no output list")
        if kind in LIFECYCLE:
            return
        self.terminal_at, self.terminal_type, self.terminal = num, kind, resp
        status = resp.get("status")
        if kind == FAILED:
            self.errored = True
            self.add("response-failed", num, clip(resp.get("error") or f"status {status!r}"))
        elif status != TERMINAL[kind]:
            self.add("status-mismatch", num, f"{kind} with status {status!r}")

    def added(self, num: int, obj: dict[str, Any]) -> None:
        item = obj.get("item")
        item = item if isinstance(item, dict) else {}
        index = _int(obj.get("output_index"))
        if index is None:
            self.add(
                "output-index-missing", num, f"output_item.added ({item.get('type')}) without output_index"
            )
            index = max(self.items, default=-1) + 1
        elif index in self.items:
            was = self.items[index].added_at
            self.add("item-added-twice", num, f"output_index {index} was added at event {was}")
        elif index != len(self.items):
            self.add("output-index-gap", num, f"output_index {index}, expected {len(self.items)}")
        self.items[index] = _Seen(item.get("type"), item.get("id"), num)
        if isinstance(item.get("id"), str):
            self.ids[item["id"]] = index

    def find(self, num: int, kind: str, obj: dict[str, Any], item_id: Any) -> tuple[int | None, _Seen | None]:
        """The item an event is about (by output_index, else by its item_id), with the findings
        of how the event names it."""
        index = _int(obj.get("output_index"))
        if index is None:
            self.add("output-index-missing", num, f"{kind} without output_index")
            index = self.ids.get(item_id) if isinstance(item_id, str) else None
            if index is None:
                return None, None
        seen = self.items.get(index)
        if seen is None:
            self.add("event-before-added", num, f"{kind} for output_index {index}, not added before")
            return index, None
        if seen.done_at:
            self.add(
                "event-after-done", num, f"{kind} for output_index {index}, done at event {seen.done_at}"
            )
        return index, seen

    def item_event(self, num: int, kind: str, obj: dict[str, Any]) -> None:
        item_id = obj.get("item_id")
        if item_id is None:
            self.add("item-id-missing", num, f"{kind} without item_id")
        index, seen = self.find(num, kind, obj, item_id)
        if seen is None:
            return
        if item_id is not None and seen.id is not None and item_id != seen.id:
            self.add("item-id-mismatch", num, f"{kind}: item_id {item_id!r}, item {index} is {seen.id!r}")
        index_key = INDEXED_EVENTS.get(kind)
        part = obj.get(index_key) if index_key else None
        if index_key and _int(part) is None:
            self.add("content-index-missing", num, f"{kind} without {index_key}")
        spec = DELTAS.get(kind) or DONES.get(kind)
        if spec is None:
            return
        text_key = spec[2]
        pieces = seen.texts.setdefault((spec[0], text_key, _int(part)), [])
        if kind in DELTAS:
            if isinstance(obj.get("delta"), str):
                pieces.append(obj["delta"])
            return
        value = obj.get(text_key)
        if not isinstance(value, str):
            return
        streamed = "".join(pieces)
        if value != streamed:
            self.add(
                "done-differs", num, f"{kind}: {text_key} {clip(value, 60)}, deltas {clip(streamed, 60)}"
            )
        if kind == "response.function_call_arguments.done":
            self.arguments(num, index, value)
        pieces[:] = [value]

    def arguments(self, num: int, index: int | None, args: str) -> None:
        try:
            decode_json(args)
        except ValueError as exc:
            self.add("arguments-not-json", num, f"item {index}: {exc}: {clip(args)}")

    def item_done(self, num: int, obj: dict[str, Any]) -> None:
        item = obj.get("item")
        item = item if isinstance(item, dict) else {}
        index, seen = self.find(num, ITEM_DONE, obj, item.get("id"))
        if seen is None or seen.done_at:
            return
        seen.done_at, seen.done_item = num, item
        if item.get("id") != seen.id:
            self.add("item-id-changed", num, f"item {index}: id {item.get('id')!r}, added as {seen.id!r}")
        for (key, text_key, part), pieces in seen.texts.items():
            value = _streamed_field(item, key, text_key, part)
            if value is not None and value != "".join(pieces):
                where = f"{key}[{part}].{text_key}" if key else text_key
                self.add(
                    "done-differs", num, f"item {index} done: its {where} differs from what was streamed"
                )
        args = item.get("arguments")
        if (
            item.get("type") == "function_call"
            and isinstance(args, str)
            and (None, "arguments", None) not in seen.texts
        ):
            self.arguments(num, index, args)

    def end(self) -> None:
        terminal = self.terminal
        if not self.terminal_at and not self.errored:
            self.add("no-terminal", None, "no response.completed, response.incomplete or response.failed")
        if terminal is None:
            return
        output = terminal.get("output")
        output = output if isinstance(output, list) else []
        for i, seen in sorted(self.items.items()):
            if not seen.done_at and not any(_same_identity(seen, o) for o in output):
                self.add("item-unfinished", seen.added_at, f"item {i} ({seen.kind}) never done")
        done = {i: s.done_item for i, s in self.items.items() if s.done_item is not None}
        if not done or self.terminal_type == FAILED:
            return
        if not output:
            what = f"{self.terminal_type} has an empty output, {len(done)} item(s) were done"
            self.add("terminal-output-differs", self.terminal_at, what)
        elif len(output) != len(done):
            what = f"{len(output)} item(s) in the terminal output, {len(done)} done in the stream"
            self.add("terminal-output-differs", self.terminal_at, what)
        else:
            for pos, (i, item) in enumerate(sorted(done.items())):
                diff = _item_diff(item, output[pos])
                if diff:
                    self.add("terminal-output-differs", self.terminal_at, f"item {i}: {diff}")


def _streamed_field(item: dict[str, Any], key: str | None, text_key: str, at: int | None) -> str | None:
    """The text a done item holds where deltas streamed into (``None``: not found)."""
    if key is None:
        value = item.get(text_key)
        return value if isinstance(value, str) else None
    parts = item.get(key)
    if isinstance(parts, list) and at is not None and 0 <= at < len(parts) and isinstance(parts[at], dict):
        value = parts[at].get(text_key)
        if isinstance(value, str):
            return value
    return None


def _same_identity(seen: _Seen, item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == seen.kind and item.get("id") == seen.id


def _item_diff(done: dict[str, Any], final: Any) -> str:
    """How the terminal's copy of an item differs from the item done in the stream, in what a
    client reads of it ('' when it does not; reasoning's encrypted_content changes every time)."""
    if not isinstance(final, dict):
        return "not an object in the terminal output"
    for key in ("type", "id", "call_id", "name", "arguments", "input", "role"):
        if done.get(key) != final.get(key):
            return f"{key} {clip(final.get(key), 60)} in the terminal output, {clip(done.get(key), 60)} done"
    for key in ("content", "summary"):
        if _texts(done.get(key)) != _texts(final.get(key)):
            return f"its {key} text differs from the item done"
    return ""


def _texts(parts: Any) -> list[Any]:
    if not isinstance(parts, list):
        return []
    return [(p.get("type"), p.get("text", p.get("refusal"))) if isinstance(p, dict) else p for p in parts]


# -- meaning --------------------------------------------------------------------------------------


def response_output(resp: dict[str, Any]) -> Output:
    """The answer a response holds, as one output: its text, reasoning (summary and raw),
    refusal, calls (function and custom tool calls; hosted tools by their type), and its status
    (with the reason when incomplete)."""
    texts: list[str] = []
    summary: list[str] = []
    raw: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    output = resp.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            content = item.get("content")
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif kind == "reasoning":
            for key, into in (("summary", summary), ("content", raw)):
                parts = item.get(key)
                into += (
                    [str(p.get("text") or "") for p in parts if isinstance(p, dict)]
                    if isinstance(parts, list)
                    else []
                )
        elif kind == "function_call":
            calls.append(ToolCall(item.get("name"), item.get("arguments"), item.get("call_id")))
        elif kind == "custom_tool_call":
            calls.append(ToolCall(item.get("name"), item.get("input"), item.get("call_id"), kind))
        else:  # hosted tools (web/file search, MCP, code interpreter, image generation …)
            args = next((item[k] for k in ("arguments", "action", "input", "code") if k in item), None)
            calls.append(
                ToolCall(item.get("name") or kind, args, item.get("call_id") or item.get("id"), str(kind))
            )
    parts: list[tuple[str, str, Any]] = [("text", "text", "".join(texts))]
    if any(summary):
        parts.append(("reasoning", "reasoning_summary", "\n\n".join(summary)))
    if any(raw):
        parts.append(("reasoning", "reasoning_text", "".join(raw)))
    if any(refusals):
        parts.append(("refusal", "refusal", "".join(refusals)))
    finish: Any = resp.get("status")
    details = resp.get("incomplete_details")
    if isinstance(details, dict) and details.get("reason"):
        finish = f"{finish}: {details['reason']}"
    return Output(0, parts, calls, finish=finish)


# -- the dialect ----------------------------------------------------------------------------------


# -- repair ---------------------------------------------------------------------------------------


class ResponsesRepairer(Repairer):
    """For a stream client with ``repair``: gives each event what the openai SDK's stream helper
    needs and the stream itself tells, as llama-server's Responses stream leaves it out:

    - ``sequence-missing`` (and repeated, decreasing, gaps): every event gets its
      ``sequence_number``, counting from 0;
    - ``output-index-missing``: an item event gets its item's ``output_index`` (from its
      ``item_id``, else the last item added; a new ``output_item.added`` the next index);
    - ``content-index-missing``: a part event gets its part's index (a new part the next one of
      its item, the others the item's last part);
    - ``created-no-output``: ``response.created``/``in_progress`` get ``output: []`` (openai 2.x
      appends to it);
    - ``type-missing``: a payload without ``type`` gets its ``event:`` name;
    - ``terminal-output-differs``: a terminal response with an empty ``output`` (the Codex
      backend's ``output: []``) gets the items the stream finished;
    - ``no-terminal``: a clean end without a terminal event gets an ``error`` event (in the
      documented shape and with a nested ``error``, so the SDK raises), not a quiet end.
    """

    def __init__(self, dialect: Responses) -> None:
        super().__init__(dialect.framing)
        self.dialect = dialect
        self.sequence = 0
        self.items: list[str | None] = []  # output_index -> item id
        self.parts: dict[int, dict[str, int]] = {}  # output_index -> part list -> parts opened
        self.done_items: dict[int, Any] = {}
        self.ended = False  # a terminal, failed or error event arrived

    def event(self, block: bytes) -> bytes:
        if self.ended:
            return block
        ev = self.decode(block)
        obj = try_json(ev.data) if ev is not None else None
        if ev is None or not isinstance(obj, dict):
            return block
        changed = False
        kind = obj.get("type")
        if not isinstance(kind, str) and ev.event != "message":
            obj["type"] = kind = ev.event
            self.note("type-missing")
            changed = True
        elif not isinstance(kind, str):
            kind = None  # nothing to go by (no event name, a type that is not a string): forwarded
        if obj.get("sequence_number") != self.sequence:
            self.note("sequence-missing" if "sequence_number" not in obj else "sequence-renumbered")
            obj["sequence_number"] = self.sequence
            changed = True
        self.sequence += 1
        if kind in LIFECYCLE and isinstance(obj.get("response"), dict) and "output" not in obj["response"]:
            obj["response"]["output"] = []
            self.note("created-no-output")
            changed = True
        elif kind in (ITEM_ADDED, ITEM_DONE) or kind in ITEM_EVENTS:
            changed |= self._item_event(kind, obj)
        elif kind in TERMINAL:
            self.ended = True
            resp = obj.get("response")
            if isinstance(resp, dict) and not resp.get("output") and self.done_items:
                resp["output"] = [self.done_items[i] for i in sorted(self.done_items)]
                self.note("terminal-output-differs")
                changed = True
        elif kind in (FAILED, "error"):
            self.ended = True
        return self.encode(ev, obj) if changed else block

    def _item_event(self, kind: str, obj: dict[str, Any]) -> bool:
        changed = False
        index = _int(obj.get("output_index"))
        if index is None:
            if kind == ITEM_ADDED:
                index = len(self.items)
            else:
                item = obj.get("item")
                item_id = obj.get("item_id") or (item.get("id") if isinstance(item, dict) else None)
                index = self.items.index(item_id) if item_id in self.items else len(self.items) - 1
            if index >= 0:
                obj["output_index"] = index
                self.note("output-index-missing")
                changed = True
        if index is None or index < 0:
            return changed
        if kind == ITEM_ADDED:
            while len(self.items) <= index:
                self.items.append(None)
            item = obj.get("item")
            self.items[index] = item.get("id") if isinstance(item, dict) else None
            return changed
        if kind == ITEM_DONE:
            self.done_items[index] = obj.get("item")
            return changed
        key = INDEXED_EVENTS.get(kind)
        if key is not None and _int(obj.get(key)) is None:
            opened = self.parts.setdefault(index, {}).get(key, 0)
            obj[key] = opened if kind in PART_ADDED else max(opened - 1, 0)
            self.note("content-index-missing")
            changed = True
        if kind in PART_ADDED:
            parts = self.parts.setdefault(index, {})
            parts[key] = max(parts.get(key, 0), obj[key] + 1)  # type: ignore[index]
        return changed

    def end(self, clean: bool) -> bytes:
        if not clean or self.ended:
            return b""
        self.note("no-terminal")
        message = "upstream stream ended without response.completed/incomplete: it was cut short"
        err = self.dialect.error_body(message, "truncated")["error"]  # the envelope a JSON client gets
        payload = {**err, "type": "error", "error": err, "sequence_number": self.sequence}
        return self.framing.encode([json_event(payload, "error")])


class Responses(Dialect):
    """OpenAI Responses API: ``response.*`` event streams ⇄ one ``response`` object."""

    name = "responses"
    title = "OpenAI Responses"
    path_suffixes = ("/responses",)  # so not …/responses/{id}, …/input_tokens, …/compact
    terminal_name = "response.completed/incomplete"
    # terminal: matched in the stream's last event; errors: anywhere. Both are the payload's
    # "type": text that mentions them is inside a JSON string, where its quotes are escaped (an
    # error event without a JSON type is still caught: the stream is then aggregated, which fails)
    watch = Watch(
        terminal=(
            b'"type":"response.completed"',
            b'"type":"response.incomplete"',
            b'"type": "response.completed"',
            b'"type": "response.incomplete"',
        ),
        errors=(
            b'"type":"error"',
            b'"type":"response.failed"',
            b'"type": "error"',
            b'"type": "response.failed"',
        ),
    )
    codes = CODES
    prompt_keys = ("instructions", "input", "tools")

    def detect(self, payload: Any) -> int:
        if not isinstance(payload, dict):
            return 0
        kind = payload.get("type")
        if payload.get("object") == "response" or (isinstance(kind, str) and kind.startswith("response.")):
            return 2
        return int(
            isinstance(payload.get("output"), list) and "status" in payload and "choices" not in payload
        )

    # -- the request ------------------------------------------------------------------------
    def asked(self, body: dict[str, Any]) -> Asked | None:
        if body.get("background") is True:
            return None  # answered later through …/responses/{id}: left alone
        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            return None
        return Asked(stream)

    def ask_stream(self, body: dict[str, Any], asked: Asked) -> bool:
        body["stream"] = True
        return False  # usage is in the terminal response: nothing to ask for, nothing to take out

    def ask_json(self, body: dict[str, Any]) -> None:
        body["stream"] = False
        body.pop("stream_options", None)  # only valid with stream: true

    # -- conversions ------------------------------------------------------------------------
    def repairer(self, asked: Asked, *, strip_usage: bool, repair: bool) -> Repairer | None:
        return ResponsesRepairer(self) if repair else None

    def aggregator(self, asked: Asked | None = None) -> ResponsesAggregator:
        return ResponsesAggregator(self)

    def synthesize(
        self, response: Any, *, usage: bool = False, chunk_chars: int = DEFAULT_CHUNK_CHARS
    ) -> Iterator[Event]:
        """The event grammar of ``response`` (``usage`` is ignored: it is in the terminal event)."""
        check_response(response)
        split_text("", chunk_chars)  # a bad chunk_chars fails now, not half-way
        return _Synth(response, chunk_chars).events()

    def checker(self, *, usage_asked: bool | None = None, n: int | None = None) -> ResponsesChecker:
        return ResponsesChecker(self)

    # -- meaning and errors -----------------------------------------------------------------
    def meaning(self, response: dict[str, Any]) -> Meaning:
        out = Meaning(
            ident={k: response[k] for k in ("model", "id") if response.get(k)},
            outputs_label="output",
            finish_label="status",
        )
        err = response.get("error")
        if err not in (None, {}):
            out.error = err.get("message") if isinstance(err, dict) else err
        out.has_outputs = "output" in response
        if out.has_outputs:
            out.outputs.append(response_output(response))
        if response.get("usage") is not None:
            out.usage = response["usage"]
        return out

    def error_body(
        self, message: str, code: str, *, partial: Any = None, upstream_error: Any = None
    ) -> dict[str, Any]:
        return openai_error_body(message, code, partial=partial, upstream_error=upstream_error)

    def error_of(self, body: Any) -> tuple[str, str, Any] | None:
        if not isinstance(body, dict) or "output" in body or body.get("object") == "response":
            return None
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code") or err.get("type") or "unknown"
            return str(code), str(err.get("message")), err.get("partial_response")
        if isinstance(err, str) and err:
            return "unknown", err, None
        return None

    # -- usage ------------------------------------------------------------------------------
    usage_words = ("input", "output")

    def usage_record(self, prompt: int, completion: int) -> dict[str, Any]:
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }


DIALECT = Responses()
