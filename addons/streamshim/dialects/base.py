"""What every OpenAI-style dialect shares: the SSE → payload driver with its error rules, the
merge of top-level fields, logprobs arrays, and the splitting of text into streamed pieces.

A dialect module (``chat``, ``completions``, …) provides an ``Aggregator`` subclass of
``StreamAggregator`` and a ``synthesize_chunks`` function; ``dialects/__init__.py`` registers it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from ..errors import MalformedEvent, NotAStream, StreamError, TruncatedStream, UpstreamErrorEvent
from ..sse import DONE, Event, SSEDecoder, encode_json

# Top-level fields whose first non-empty (not null, "" or 0) value wins: later chunks repeat them,
# and Azure's content-filter chunks blank them.
IDENTITY_FIELDS = frozenset({"id", "model", "created", "system_fingerprint", "service_tier"})
# Chunk fields that never reach the aggregated body.
CHUNK_ONLY_FIELDS = frozenset({"choices", "object", "obfuscation"})

DEFAULT_CHUNK_CHARS = 16
FEED_SLICE = 64 * 1024


def _snippet(data: str | bytes, limit: int = 80) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


class StreamAggregator(ABC):
    """Turns one upstream SSE body into one non-stream response, incrementally.

    ``feed(bytes)`` any number of times, then ``finish()``: it returns the aggregated response,
    or raises a ``StreamError`` carrying what was received so far (``.partial``). The first fault
    stops aggregation; ``error`` tells a caller about it before ``finish``.
    """

    object_name: ClassVar[str]

    def __init__(self) -> None:
        self.decoder = SSEDecoder()
        self.done = False  # ``data: [DONE]`` seen
        self.chunks = 0
        self.error: StreamError | None = None
        self.problems: list[str] = []
        self._head = b""
        self._top: dict[str, Any] = {}
        self._closing = False
        self._settled_keys: set[str] = set()
        self._extra_keys: list[str] = []

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
        if self.error is not None:
            return
        data = ev.data
        if ev.event == "error":
            obj = _try_json(data)
            self._fail(UpstreamErrorEvent, f"upstream sent an error event: {_error_text(obj, data)}", ev, obj)
            return
        if data == DONE:
            self.done = True
            return
        if self.done:
            self.problems.append(f"data after [DONE] ignored at {ev.where()}")
            return
        try:
            obj = _loads(data)
        except ValueError as exc:
            if self._closing:  # the body ended inside this event's JSON: a cut, not bad JSON
                self._fail(TruncatedStream, f"stream ended in the middle of an event: {_snippet(data)}", ev)
            else:
                self._fail(MalformedEvent, f"data is not valid JSON ({exc}): {_snippet(data)}", ev)
            return
        if not isinstance(obj, dict):
            self._fail(MalformedEvent, f"data is JSON but not an object: {_snippet(data)}", ev)
            return
        err = obj.get("error")
        if err:
            self._fail(UpstreamErrorEvent, f"upstream sent an error: {_error_text(obj, data)}", ev, err)
            return
        self.chunks += 1
        try:
            self._merge_top(obj)
            self.add_chunk(obj, ev)
        except (TypeError, AttributeError, ValueError) as exc:  # a field of an unexpected type
            self.chunks -= 1
            self._fail(MalformedEvent, f"chunk has an unexpected shape ({exc}): {_snippet(data)}", ev)

    def finish(self) -> dict[str, Any]:
        """End of the upstream body. Returns the response or raises ``StreamError``."""
        self._closing = True
        self.feed_events(self.decoder.close())
        self.problems.extend(self.decoder.problems)
        if self.error is not None:
            raise self.error
        if not self.done:
            if self.decoder.events == 0:
                if self.decoder.total_bytes == 0:
                    self._fail(TruncatedStream, "upstream body is empty", None)
                else:
                    self._fail(
                        NotAStream,
                        f"upstream body is not an event stream: no data event in "
                        f"{self.decoder.total_bytes} bytes, starts with {_snippet(self._head)}",
                        None,
                    )
            else:
                open_choices = self.unfinished()
                if open_choices or self.chunks == 0:
                    what = (
                        f"choice(s) {', '.join(map(str, open_choices))} without finish_reason"
                        if open_choices
                        else "no completion chunk"
                    )
                    self._fail(
                        TruncatedStream,
                        f"stream ended without [DONE] after {self.decoder.events} events, {what}",
                        None,
                    )
            if self.error is not None:
                raise self.error
        return self.build(complete=True)

    def _fail(
        self, cls: type[StreamError], message: str, ev: Event | None, upstream_error: Any = None
    ) -> None:
        self.error = cls(
            message,
            event_number=ev.number if ev else None,
            byte_offset=ev.offset if ev else self.decoder.total_bytes,
            partial=self._partial(),
            upstream_error=upstream_error,
        )

    def _partial(self) -> dict[str, Any] | None:
        if not self.chunks:
            return None
        try:
            return self.build(complete=False)
        except (TypeError, AttributeError, ValueError):
            return None

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
        for key in ("id",):
            if key in top:
                out[key] = top[key]
        out["object"] = self.object_name
        for key in ("created", "model"):
            if key in top:
                out[key] = top[key]
        out["choices"] = choices
        for key, value in top.items():
            if key not in out:
                out[key] = value
        return out

    # -- the dialect's part -----------------------------------------------------------------
    @abstractmethod
    def add_chunk(self, chunk: dict[str, Any], ev: Event) -> None:
        """Merge one parsed chunk (top-level fields are merged already)."""

    @abstractmethod
    def unfinished(self) -> list[int]:
        """Indexes of choices that have not received a finish_reason."""

    @abstractmethod
    def build(self, complete: bool) -> dict[str, Any]:
        """The non-stream response from everything merged so far."""

    @abstractmethod
    def generated_pieces(self) -> int:
        """How many chunks carried generated tokens (text, reasoning, tool calls): what a stream
        tells of ``completion_tokens`` when it carries no usage (one token per chunk is how
        llama.cpp, llama-cpp-python and vLLM stream by default)."""


# -- usage a stream did not carry -----------------------------------------------------------------

FILL_USAGE = ("estimate", "zeros", "off")  # "off": rule key `fill_usage: false`
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text (OpenAI's tokenizer guide)


def filled_usage(method: str, generated: int, request: Any) -> dict[str, int] | None:
    """A ``usage`` object for a non-stream answer built from a stream that carried none.

    ``estimate``: ``completion_tokens`` is the number of chunks that carried generated tokens,
    ``prompt_tokens`` the characters of the request's messages/prompt and tools divided by
    ``CHARS_PER_TOKEN`` (rounded up); ``zeros``: every count 0; ``off``: ``None`` (no usage)."""
    if method == "off":
        return None
    if method == "zeros":
        prompt = completion = 0
    else:
        completion = generated
        prompt = -(-_prompt_chars(request) // CHARS_PER_TOKEN)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _prompt_chars(request: Any) -> int:
    if not isinstance(request, dict):
        return 0
    total = 0
    for key in ("messages", "prompt", "tools", "functions"):
        value = request.get(key)
        if isinstance(value, str):
            total += len(value)
        elif value is not None:
            total += len(_text_of(value))
    return total


def _text_of(value: Any) -> str:
    """The text a prompt template would put in front of the model: message contents and tool
    definitions as JSON (keys included), roles left out."""
    if isinstance(value, list):
        return "".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        if "role" in value:
            return "".join(_text_of(v) for k, v in value.items() if k != "role")
        if value.get("type") == "text" and isinstance(value.get("text"), str):
            return str(value["text"])
        return encode_json(value)
    return value if isinstance(value, str) else ""


_scan_once = json.JSONDecoder().scan_once


def _loads(text: str) -> Any:
    """``json.loads`` without its per-call regex work (a chunk is parsed per event); anything
    unusual (leading space, an error) goes through ``json.loads`` for the exact message."""
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return obj


def _try_json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _error_text(obj: Any, raw: str) -> str:
    err = obj.get("error", obj) if isinstance(obj, dict) else None
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg") or err.get("detail")
        if msg:
            code = err.get("code") or err.get("type")
            return f"{msg} ({code})" if code else str(msg)
    if isinstance(err, str) and err:
        return err
    return _snippet(raw, 200)


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


def split_text(text: str, chunk_chars: int) -> list[str]:
    if chunk_chars <= 0:
        raise ValueError("chunk_chars must be positive")
    if not text:
        return [text]
    return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]


def pieces_with_tokens(text: str, tokens: list[str] | None, chunk_chars: int) -> list[tuple[str, int, int]]:
    """Split ``text`` into streamed pieces, each with the range of logprob tokens it carries.

    When the tokens spell the text exactly, each piece is one token (as a real stream sends it).
    Otherwise the text is cut every ``chunk_chars`` characters and each token goes to the piece
    where it starts; tokens past the end of the text go to the last piece.
    """
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


def dumps(obj: Any) -> str:
    """JSON for arguments that an upstream sent parsed instead of as a string."""
    return encode_json(obj)


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


def stream_chunks(
    resp: dict[str, Any],
    object_name: str,
    choice_chunks: Callable[[dict[str, Any]], Iterable[dict[str, Any]]],
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    """Chunk payloads for ``resp``: each choice's chunks (from ``choice_chunks``) in turn, then a
    ``choices: []`` usage chunk when the client asked for ``include_usage``. Top-level fields
    that are not repeated on every chunk (e.g. llama.cpp's ``timings``) ride on the last chunk."""
    base = chunk_base(resp, object_name)
    extras = {k: v for k, v in resp.items() if k not in base and k not in ("object", "choices", "usage")}
    pending: dict[str, Any] | None = None  # the last chunk is held back to carry the extras
    for choice in resp["choices"]:
        for c in choice_chunks(choice):
            if pending is not None:
                yield pending
            pending = {**base, "choices": [c]}
    if include_usage and "usage" in resp:
        if pending is not None:
            yield pending
        pending = {**base, "choices": [], "usage": resp["usage"]}
    if extras:
        if pending is None:
            pending = {**base, "choices": []}
        pending.update(extras)
    if pending is not None:
        yield pending
