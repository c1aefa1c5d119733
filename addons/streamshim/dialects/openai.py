"""What OpenAI's two choices-based APIs share (chat completions and legacy completions): the
request switches (``stream``, ``stream_options.include_usage``, ``n``), the ``data: [DONE]``
terminator, ``{"error": …}`` payloads and the OpenAI error envelope, the merge of top-level
chunk fields, logprobs arrays, ``usage``, and the chunk-level conformance check.

``chat.py`` and ``completions.py`` each add what a choice is (``message``/``delta`` vs ``text``).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..errors import TruncatedStream
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
    Watch,
    clip,
    envelope_error,
    try_json,
)

DONE = "[DONE]"
DONE_BYTES = b"data: [DONE]\n\n"
MISSING_LISTED = 16  # choice-missing findings listed one by one; the rest are counted in one more

# Top-level fields whose first non-empty (not null, "" or 0) value wins: later chunks repeat them,
# and Azure's content-filter chunks blank them.
IDENTITY_FIELDS = frozenset({"id", "model", "created", "system_fingerprint", "service_tier"})
# Chunk fields that never reach the aggregated body.
CHUNK_ONLY_FIELDS = frozenset({"choices", "object", "obfuscation"})
# Fields of a chunk that say nothing by themselves: a usage chunk left with only these after its
# injected usage is taken out is dropped whole.
CHUNK_FRAME = frozenset({"id", "object", "created", "model", "system_fingerprint", "service_tier", "choices"})

CODES: dict[str, tuple[Severity, str]] = {
    **FRAMING_CODES,
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
    "choice-bad-index": ("error", "a choice whose index is not an integer (checked as choice 0)"),
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


class OpenAIDialect(Dialect):
    """The choices-based OpenAI APIs. Subclasses set ``object_name``/``chunk_object`` and provide
    the per-choice parts."""

    object_name: ClassVar[str]  # the non-stream body's ``object``
    chunk_object: ClassVar[str]
    terminal_name = DONE
    watch = Watch(
        terminal=(b"data: [DONE]", b"data:[DONE]"),
        errors=(b'"error"', b"event: error", b"event:error"),
    )
    codes = CODES

    def detect(self, payload: Any) -> int:
        if not isinstance(payload, dict):
            return 0
        obj = payload.get("object")
        if obj in (self.object_name, self.chunk_object):
            return 2
        choices = payload.get("choices")
        if not isinstance(choices, list):
            return 0
        return int(any(isinstance(c, dict) and self.is_choice(c) for c in choices))

    @abstractmethod
    def is_choice(self, choice: dict[str, Any]) -> bool:
        """Whether a choice object (delta or whole) has this API's shape."""

    # -- the request ------------------------------------------------------------------------
    def asked(self, body: dict[str, Any]) -> Asked | None:
        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            return None
        opts = body.get("stream_options")
        usage = bool(stream and isinstance(opts, dict) and opts.get("include_usage") is True)
        n = body.get("n")
        return Asked(stream, usage, n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None)

    def ask_stream(self, body: dict[str, Any], asked: Asked) -> bool:
        body["stream"] = True
        if asked.usage:
            return False
        opts = body.get("stream_options")
        body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        return True

    def ask_json(self, body: dict[str, Any]) -> None:
        body["stream"] = False
        body.pop("stream_options", None)  # OpenAI rejects stream_options without stream

    # -- errors -----------------------------------------------------------------------------
    def error_body(
        self, message: str, code: str, *, partial: Any = None, upstream_error: Any = None
    ) -> dict[str, Any]:
        return openai_error_body(message, code, partial=partial, upstream_error=upstream_error)

    def error_of(self, body: Any) -> tuple[str, str, Any] | None:
        return envelope_error(body, "choices")

    # -- usage ------------------------------------------------------------------------------
    def usage_record(self, prompt: int, completion: int) -> dict[str, Any]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def repairer(self, asked: Asked, *, strip_usage: bool, repair: bool) -> Repairer | None:
        if not (strip_usage or repair):
            return None
        return ChunkRepairer(self, asked, strip_usage=strip_usage, repair=repair)

    # -- conformance and meaning ------------------------------------------------------------
    def checker(self, *, usage_asked: bool | None = None, n: int | None = None) -> Checker:
        return ChunkChecker(self, usage_asked, n)

    def meaning(self, response: dict[str, Any]) -> Meaning:
        out = Meaning(ident={k: response[k] for k in ("model", "id") if response.get(k)})
        if "error" in response:
            e = response["error"]
            out.error = e.get("message") if isinstance(e, dict) else e
        choices = response.get("choices")
        out.has_outputs = "choices" in response
        if out.has_outputs and not (isinstance(choices, list) and all(isinstance(c, dict) for c in choices)):
            out.odd_outputs, out.outputs_value = True, choices
        for i, c in enumerate(choices if isinstance(choices, list) else []):
            if isinstance(c, dict):
                output = self.choice_output(c)
                output.index = c.get("index", i) if isinstance(c.get("index", i), int) else i
                out.outputs.append(output)
        if response.get("usage") is not None:
            out.usage = response["usage"]
        return out

    @abstractmethod
    def choice_output(self, choice: dict[str, Any]) -> Output:
        """What one choice of a non-stream body means."""

    # -- conversions ------------------------------------------------------------------------
    aggregator_class: ClassVar[type[ChoicesAggregator]]

    def aggregator(self, asked: Asked | None = None) -> ChoicesAggregator:
        return self.aggregator_class(self, asked)

    def synthesize(
        self, response: Any, *, usage: bool = False, chunk_chars: int = DEFAULT_CHUNK_CHARS
    ) -> Iterator[Event]:
        self.check_response(response)
        chunks = self.stream_chunks(response, lambda c: self.choice_chunks(c, chunk_chars), usage)
        return chunk_events(chunks)

    @staticmethod
    @abstractmethod
    def check_response(response: Any) -> list[dict[str, Any]]:
        """The choices of a non-stream body, or ``BadResponse`` naming what is missing."""

    @staticmethod
    @abstractmethod
    def choice_chunks(choice: dict[str, Any], chunk_chars: int) -> Iterator[dict[str, Any]]:
        """The choice objects (``delta``s or text pieces) that stream one choice."""

    def stream_chunks(
        self,
        resp: dict[str, Any],
        choice_chunks: Callable[[dict[str, Any]], Iterable[dict[str, Any]]],
        usage: bool,
    ) -> Iterator[dict[str, Any]]:
        """Chunk payloads for ``resp``: each choice's chunks (from ``choice_chunks``) in turn, then
        a ``choices: []`` usage chunk when the client asked for ``include_usage``. Top-level
        fields that are not repeated on every chunk (e.g. llama.cpp's ``timings``) ride on the
        last chunk."""
        base = chunk_base(resp, self.chunk_object)
        extras = {k: v for k, v in resp.items() if k not in base and k not in ("object", "choices", "usage")}
        pending: dict[str, Any] | None = None  # the last chunk is held back to carry the extras
        for choice in resp["choices"]:
            for c in choice_chunks(choice):
                if pending is not None:
                    yield pending
                pending = {**base, "choices": [c]}
        if usage and "usage" in resp:
            if pending is not None:
                yield pending
            pending = {**base, "choices": [], "usage": resp["usage"]}
        if extras:
            if pending is None:
                pending = {**base, "choices": []}
            pending.update(extras)
        if pending is not None:
            yield pending


def openai_error_body(
    message: str, code: str, *, partial: Any = None, upstream_error: Any = None
) -> dict[str, Any]:
    """OpenAI's error envelope (chat, completions and Responses answer errors alike), streamshim's
    message in it, with the upstream's own error and what arrived so far when there are."""
    err: dict[str, Any] = {
        "message": f"streamshim: {message}",
        "type": "upstream_stream_error",
        "code": code,
        "param": None,
    }
    if upstream_error is not None:
        err["upstream_error"] = upstream_error
    if partial is not None:
        err["partial_response"] = partial
    return {"error": err}


def encode_chunks(chunks: Iterable[dict[str, Any]], done: bool = True) -> bytes:
    """Chunk payloads as an SSE body, ``data: [DONE]`` at the end (unless ``done`` is False)."""
    from ..framing.sse import encode_events

    return encode_events(chunk_events(chunks, done))


def chunk_events(chunks: Iterable[dict[str, Any]], done: bool = True) -> Iterator[Event]:
    """Chunk payloads as events, then ``data: [DONE]``."""
    for c in chunks:
        yield Event(data=encode_json(c))
    if done:
        yield Event(data=DONE)


def chunk_base(resp: dict[str, Any], object_name: str) -> dict[str, Any]:
    """The fields every synthesized chunk repeats: id, object, created, model, fingerprint."""
    base: dict[str, Any] = {}
    if "id" in resp:
        base["id"] = resp["id"]
    base["object"] = object_name
    for key in ("created", "model", "system_fingerprint", "service_tier"):
        if key in resp:
            base[key] = resp[key]
    return base


# -- aggregation ----------------------------------------------------------------------------------


class ChoicesAggregator(Aggregator):
    """Chunks with ``choices`` in, one response out: ``[DONE]``, error events and payloads, the
    truncation rule (no ``[DONE]`` and a choice without finish_reason), the top-level merge."""

    choice_class: ClassVar[type[ChoiceState]]

    def __init__(self, dialect: OpenAIDialect, asked: Asked | None = None) -> None:
        super().__init__(dialect.framing)
        self.object_name = dialect.object_name
        self.n = asked.n if asked is not None else None  # choices the request asked for
        self.choices: dict[int, ChoiceState] = {}
        self._top: dict[str, Any] = {}
        self._settled_keys: set[str] = set()
        self._extra_keys: list[str] = []

    @property
    def done(self) -> bool:
        """``data: [DONE]`` seen."""
        return self.terminated

    def before_json(self, ev: Event) -> bool:
        if ev.event == "error":
            obj = try_json(ev.data)
            self.fail_upstream(ev, obj, obj if obj is not None else ev.data, "upstream sent an error event")
            return True
        if ev.data == DONE:
            self.terminated = True
            return True
        if self.terminated:
            self.problems.append(f"data after [DONE] ignored at {ev.where()}")
            return True
        return False

    def add(self, obj: dict[str, Any], ev: Event) -> None:
        err = obj.get("error")
        if err:
            self.chunks -= 1
            self.fail_upstream(ev, obj, err)
            return
        self._merge_top(obj)
        self.add_chunk(obj, ev)

    def end(self) -> None:
        if self.terminated:
            return
        open_choices = self.unfinished()
        missing, total = missing_choices(self.n, self.choices)
        if open_choices or missing or self.chunks == 0:
            if open_choices:
                what = f"choice(s) {', '.join(map(str, open_choices))} without finish_reason"
            elif missing:
                what = f"choice(s) {_listed(missing, total)} of n={self.n} never arrived"
            else:
                what = "no completion chunk"
            self.fail(
                TruncatedStream,
                f"stream ended without [DONE] after {self.decoder.events} events, {what}",
                None,
            )

    def _merge_top(self, chunk: dict[str, Any]) -> None:
        if chunk.keys() == self._settled_keys:
            # the same top-level keys as before, identity fields already known: only the
            # other fields (usage, provider extras) need a look
            for key in self._extra_keys:
                self._merge_top_field(key, chunk[key])
            return
        for key, value in chunk.items():
            if key not in CHUNK_ONLY_FIELDS:
                self._merge_top_field(key, value)
        top = self._top
        if all(top.get(k) not in (None, "", 0) for k in chunk.keys() & IDENTITY_FIELDS):
            self._settled_keys = set(chunk.keys())
            self._extra_keys = [k for k in chunk if k not in CHUNK_ONLY_FIELDS and k not in IDENTITY_FIELDS]

    def _merge_top_field(self, key: str, value: Any) -> None:
        top = self._top
        if key in IDENTITY_FIELDS:
            if top.get(key) in (None, "", 0):  # Azure filter chunks: "", 0
                top[key] = value
        elif isinstance(value, dict) and key != "usage" and isinstance(top.get(key), dict):
            # provider extras spread over chunks (Groq's x_groq: seed first, usage last)
            top[key] = {**top[key], **value}
        elif value is not None or key not in top:
            top[key] = value

    def build_top(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        top = self._top
        out: dict[str, Any] = {}
        if "id" in top:
            out["id"] = top["id"]
        out["object"] = self.object_name
        for key in ("created", "model"):
            if key in top:
                out[key] = top[key]
        out["choices"] = choices
        for key, value in top.items():
            if key not in out:
                out[key] = value
        return out

    def add_chunk(self, chunk: dict[str, Any], ev: Event) -> None:
        """Merge one chunk's choices (top-level fields are merged already), each by its index."""
        choices = chunk.get("choices")
        if not choices:
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice_index(choice)
            state = self.choices.get(index)
            if state is None:
                state = self.choices[index] = self.choice_class(index)
            state.merge(choice)

    def unfinished(self) -> list[int]:
        """Indexes of choices that have not received a finish_reason."""
        return [i for i, c in sorted(self.choices.items()) if c.finish_reason is None]

    def generated_pieces(self) -> int:
        return sum(c.generated for c in self.choices.values())

    def build(self, complete: bool) -> dict[str, Any]:
        return self.build_top([self.choices[i].build(complete) for i in sorted(self.choices)])


class ChoiceState(Protocol):
    """One choice being merged (chat's and legacy completions' ``_Choice``)."""

    finish_reason: str | None
    generated: int  # chunks that carried generated tokens

    def __init__(self, index: int) -> None: ...

    def merge(self, choice: dict[str, Any]) -> None: ...

    def build(self, complete: bool) -> dict[str, Any]: ...


def choice_index(choice: dict[str, Any]) -> int:
    index = choice.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def missing_choices(
    n: int | None, seen: Collection[int], limit: int = MISSING_LISTED
) -> tuple[list[int], int]:
    """The first ``limit`` choice indexes below ``n`` (what the request asked for) that never
    appeared, and how many never appeared in all. ``n`` comes from the client: never a loop over
    all of it."""
    if not n:
        return [], 0
    total = n - sum(1 for i in seen if isinstance(i, int) and 0 <= i < n)
    first: list[int] = []
    i = 0
    while len(first) < min(limit, total):
        if i not in seen:
            first.append(i)
        i += 1
    return first, total


def _listed(indexes: list[int], total: int) -> str:
    more = total - len(indexes)
    return ", ".join(map(str, indexes)) + (f" and {more} more" if more > 0 else "")


def merge_logprobs(state: dict[str, Any] | None, incoming: dict[str, Any]) -> dict[str, Any]:
    """Append each list of ``incoming`` to ``state``; other values: the last non-null wins."""
    if state is None:
        state = {}
    for key, value in incoming.items():
        if isinstance(value, list):
            cur = state.get(key)
            if isinstance(cur, list):
                cur.extend(value)
            else:
                state[key] = list(value)
        elif value is not None or key not in state:
            state[key] = value
    return state


def pieces_with_tokens(text: str, tokens: list[str] | None, chunk_chars: int) -> list[tuple[str, int, int]]:
    """Split ``text`` into streamed pieces, each with the range of logprob tokens it carries.

    When the tokens spell the text exactly, each piece is one token (as a real stream sends it).
    Otherwise the text is cut every ``chunk_chars`` characters and each token goes to the piece
    where it starts; tokens past the end of the text go to the last piece.
    """
    from .base import split_text

    if tokens and "".join(tokens) == text:
        out: list[tuple[str, int, int]] = []
        for i, tok in enumerate(tokens):
            if tok == "" and out:
                txt, a, _ = out[-1]
                out[-1] = (txt, a, i + 1)
            else:
                out.append((tok, i, i + 1))
        return out
    parts = split_text(text, chunk_chars)
    if not tokens:
        return [(p, 0, 0) for p in parts]
    ranges: list[tuple[str, int, int]] = []
    tok_i = 0
    pos = 0
    start_of_tok = 0
    for n, part in enumerate(parts):
        end = pos + len(part)
        first = tok_i
        last_piece = n == len(parts) - 1
        while tok_i < len(tokens) and (last_piece or start_of_tok < end):
            start_of_tok += len(tokens[tok_i])
            tok_i += 1
        ranges.append((part, first, tok_i))
        pos = end
    return ranges


# -- conformance ----------------------------------------------------------------------------------


@dataclass
class _Call:
    id: str | None
    name: str | None
    arguments: list[str] = field(default_factory=list)
    event: int = 0


@dataclass
class _ChoiceSeen:
    first_event: int
    role_seen: bool = False
    finish: str | None = None
    finish_event: int = 0
    calls: dict[int, _Call] = field(default_factory=dict)


class ChunkChecker(Checker):
    """The chunk contract of OpenAI streams (chat and legacy completions)."""

    codes = CODES

    def __init__(self, dialect: OpenAIDialect, usage_asked: bool | None, n: int | None) -> None:
        super().__init__(dialect.name)
        self.chat = dialect.name == "chat"
        self.object = dialect.chunk_object
        self.usage_asked = usage_asked
        self.n = n
        self.choices: dict[int, _ChoiceSeen] = {}
        self.first: dict[str, Any] = {}
        self.done_at = 0
        self.usage_seen = False

    def before_json(self, num: int, name: str, data: str) -> bool:
        if self.done_at:
            if data.strip() == DONE:
                self.add("duplicate-done", num, f"[DONE] again (first at event {self.done_at})")
            else:
                self.add("data-after-done", num, f"after [DONE] at event {self.done_at}: {clip(data)}")
            return True
        if data.strip() == DONE:
            self.done_at = num
            return True
        return False

    def on_object(self, num: int, name: str, chunk: dict[str, Any]) -> None:
        if "error" in chunk and chunk["error"] not in (None, {}, False):
            self.errored = True
            self.add("upstream-error", num, clip(json.dumps(chunk["error"], ensure_ascii=False)))
            return
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
                self.add("choices-missing", num, f"choices is {clip(json.dumps(choices))}")
            return
        for choice in choices:
            if isinstance(choice, dict):
                self.choice(num, choice)

    def choice(self, num: int, choice: dict[str, Any]) -> None:
        index = choice_index(choice)
        raw = choice.get("index", 0)
        if not isinstance(raw, int) or isinstance(raw, bool):  # "0", [-1], true: aggregation takes 0
            self.add("choice-bad-index", num, f"index {clip(raw)}: taken as choice 0, as aggregation does")
        st = self.choices.get(index)
        if st is None:
            st = self.choices[index] = _ChoiceSeen(num)
        calls: Any = None
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

    def tool_call(self, num: int, index: int, st: _ChoiceSeen, call: dict[str, Any]) -> None:
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        i = call.get("index")
        if not isinstance(i, int) or isinstance(i, bool):
            self.add("tool-call-no-index", num, f"choice {index}: tool call without index: {clip(call)}")
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

    def end(self) -> None:
        unfinished = [i for i, st in sorted(self.choices.items()) if st.finish is None]
        if not self.done_at and not self.errored:
            if unfinished or not self.choices:
                self.add("truncated", None, "no [DONE] and no finish_reason on every choice")
            else:
                self.add("no-terminator", None, "every choice finished, but no data: [DONE] followed")
        for i in unfinished:
            self.add("no-finish-reason", None, f"choice {i} never got a finish_reason")
        if self.n is not None:
            # one finding per missing choice, up to a few, then one that counts the rest
            missing, total = missing_choices(self.n, self.choices)
            for i in missing:
                self.add("choice-missing", None, f"n={self.n} asked, choice {i} never appeared")
            if total > len(missing):
                more = total - len(missing)
                self.add("choice-missing", None, f"n={self.n} asked, {more} more choices never appeared")
        for i, st in sorted(self.choices.items()):
            self._finish_calls(i, st)
        if self.usage_asked is True and not self.usage_seen and not self.errored:
            self.add("usage-missing", None, "include_usage asked, no chunk carried usage")
        elif self.usage_asked is False and self.usage_seen:
            self.add("usage-unasked", None, "usage arrived unasked")

    def _finish_calls(self, index: int, st: _ChoiceSeen) -> None:
        for i, call in sorted(st.calls.items()):
            text = "".join(call.arguments)
            try:
                decode_json(text or "{}")
            except ValueError as exc:
                code = "tool-call-cut-arguments" if st.finish == "length" else "tool-call-bad-arguments"
                what = f"choice {index}: tool call {i} ({call.name})"
                self.add(code, call.event, f"{what}: {exc}: {clip(text)}")
        if st.calls and st.finish not in (None, "tool_calls", "length", "function_call"):
            self.add(
                "finish-not-tool-calls",
                st.finish_event,
                f"choice {index}: {len(st.calls)} tool call(s), finish_reason {st.finish!r}",
            )
        if not st.calls and st.finish == "tool_calls":
            self.add("finish-tool-calls-without-calls", st.finish_event, f"choice {index}: no tool call")


# -- repair ---------------------------------------------------------------------------------------


@dataclass
class _ChoiceRepair:
    role_seen: bool = False
    finished: bool = False
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> id, type, name seen
    by_id: dict[str, int] = field(default_factory=dict)
    fc_name: bool = False  # the legacy function_call's name was sent


class ChunkRepairer(Repairer):
    """For a stream client: takes out the usage chunk streamshim asked for (its ``usage`` only,
    when the chunk carries more: llama-server moves its ``timings`` onto it) and, with
    ``repair``, mends what the openai SDK's accumulator gets wrong, from the stream itself:

    - ``role-repeated``: a role after a choice's first delta is dropped;
    - ``tool-call-repeated-id`` / ``-type`` / ``-name``: a tool call's id, type and function name
      after its first delta are dropped (llama-cpp-python repeats them in every delta), and a
      legacy ``function_call`` name after the first;
    - ``tool-call-no-index``: a tool-call delta without index gets the index its id implies (a
      new id: the next index; no id: the choice's last call);
    - ``finish-not-tool-calls``: ``finish_reason: "stop"`` on a choice that made tool calls
      becomes ``"tool_calls"`` (loops that run tools on ``finish_reason == "tool_calls"`` would
      otherwise drop the calls; no client reads ``stop`` there as anything else);
    - ``no-terminator``: a clean end with every choice finished but no ``[DONE]`` gets
      ``data: [DONE]``;
    - ``truncated``: a clean end with a choice unfinished (or one of the ``n`` asked missing) and
      no ``[DONE]`` gets an error event, ``data: {"error": …}``, which the openai SDK raises on,
      instead of a quiet end that looks complete.
    """

    def __init__(self, dialect: OpenAIDialect, asked: Asked, *, strip_usage: bool, repair: bool) -> None:
        super().__init__(dialect.framing)
        self.dialect = dialect
        self.chat = dialect.name == "chat"
        self.n = asked.n
        self.strip_usage = strip_usage
        self.repair = repair
        self.choices: dict[int, _ChoiceRepair] = {}
        self.done = False
        self.errored = False

    # an event holding none of these words has nothing to repair and changes no state, when it
    # is about a choice already known (content pieces: the bulk of a stream)
    _TRIGGERS = (b'"role"', b'"tool_calls"', b'"function_call"', b'"usage"', b'"error"', b"[DONE]", b"event:")

    def event(self, block: bytes) -> bytes:
        if self.done or self._plain(block):
            return block
        ev = self.decode(block)
        if ev is None:
            return block
        if ev.event == "error":
            self.errored = True
            return block
        if ev.data == DONE:
            self.done = True
            return block
        obj = try_json(ev.data)
        if not isinstance(obj, dict):
            return block
        if obj.get("error"):
            self.errored = True
            return block
        changed = False
        if self.strip_usage and obj.get("choices") == [] and obj.get("usage") is not None:
            del obj["usage"]
            self.note("usage-injected")
            if obj.keys() <= CHUNK_FRAME:
                return b""
            changed = True
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    changed |= self._choice(choice)
        return self.encode(ev, obj) if changed else block

    def _plain(self, block: bytes) -> bool:
        """A content piece of choice 0, already known, that finishes nothing: no parse needed."""
        if 0 not in self.choices or block.count(b'"index"') != 1:
            return False
        if b'"index":0' not in block and b'"index": 0' not in block:
            return False
        if b'"finish_reason":"' in block or b'"finish_reason": "' in block:
            return False
        return not any(t in block for t in self._TRIGGERS)

    def _choice(self, choice: dict[str, Any]) -> bool:
        st = self.choices.setdefault(choice_index(choice), _ChoiceRepair())
        changed = False
        delta = choice.get("delta")
        if self.repair and isinstance(delta, dict):
            if delta.get("role"):
                if st.role_seen:
                    del delta["role"]
                    self.note("role-repeated")
                    changed = True
                st.role_seen = True
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        changed |= self._tool_call(st, call)
            fc = delta.get("function_call")
            if isinstance(fc, dict) and fc.get("name"):
                if st.fc_name:
                    del fc["name"]
                    self.note("function-call-repeated-name")
                    changed = True
                st.fc_name = True
        finish = choice.get("finish_reason")
        if finish is not None:
            st.finished = True
            if self.repair and finish == "stop" and st.calls:
                choice["finish_reason"] = "tool_calls"
                self.note("finish-not-tool-calls")
                changed = True
        return changed

    def _tool_call(self, st: _ChoiceRepair, call: dict[str, Any]) -> bool:
        changed = False
        index = call.get("index")
        cid = call.get("id")
        if not isinstance(index, int) or isinstance(index, bool):
            if isinstance(cid, str) and cid in st.by_id:
                index = st.by_id[cid]
            elif cid or not st.calls:
                index = max(st.calls, default=-1) + 1
            else:
                index = max(st.calls)
            call["index"] = index
            self.note("tool-call-no-index")
            changed = True
        seen = st.calls.get(index)
        if seen is None:
            fn = call.get("function")
            st.calls[index] = {
                "id": cid,
                "type": call.get("type"),
                "name": fn.get("name") if isinstance(fn, dict) else None,
            }
            if isinstance(cid, str):
                st.by_id[cid] = index
            return changed
        for key in ("id", "type"):
            if call.get(key) is not None and seen[key] is not None and call[key] == seen[key]:
                del call[key]
                self.note(f"tool-call-repeated-{key}")
                changed = True
            elif call.get(key) is not None and seen[key] is None:
                seen[key] = call[key]
        fn = call.get("function")
        if isinstance(fn, dict) and fn.get("name") is not None:
            if seen["name"] is not None and fn["name"] == seen["name"]:
                del fn["name"]
                self.note("tool-call-repeated-name")
                changed = True
            elif seen["name"] is None:
                seen["name"] = fn["name"]
        return changed

    def end(self, clean: bool) -> bytes:
        if not clean or self.done or self.errored:
            return b""
        unfinished = [i for i, st in sorted(self.choices.items()) if not st.finished]
        missing, total = missing_choices(self.n, self.choices)
        if not self.choices or unfinished or missing:
            self.note("truncated")
            listed = _listed(unfinished + missing, len(unfinished) + total)
            what = "no completion chunk" if not self.choices else f"choice(s) {listed} without finish_reason"
            message = f"upstream stream ended without [DONE], {what}: it was cut short"
            body = self.dialect.error_body(message, "truncated")
            return self.framing.encode([Event(data=encode_json(body))])
        self.note("no-terminator")
        return DONE_BYTES
