"""OpenAI chat completions (``/v1/chat/completions``): ``chat.completion.chunk`` streams ⇄ one
``chat.completion``.

``Aggregator`` merges chunks into the response the upstream would have sent without streaming
(tool calls are merged in ``_Choice.merge_tool_calls``); ``Chat.synthesize`` does the reverse
(``_choice_chunks``, ``_tool_call_deltas``).
For any valid completion ``x``: ``aggregate(synthesize(x, usage=True)) == x``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import BadResponse
from ..framing import encode_json
from .base import Output, ToolCall, split_text
from .openai import (
    ChoicesAggregator,
    OpenAIDialect,
    merge_logprobs,
    pieces_with_tokens,
)

# Message fields streamed as text pieces, in the order a synthesized stream sends them.
STREAMED_TEXT = ("reasoning_content", "reasoning", "content", "refusal")
# Delta fields that carry generated tokens (a delta with one of them counts towards the estimate
# of completion_tokens when the upstream sent no usage).
GENERATED = (*STREAMED_TEXT, "tool_calls", "function_call", "audio")
# Logprobs arrays and the message field whose tokens they describe.
LOGPROB_TEXT = {"content": "content", "refusal": "refusal"}
_CHOICE_KNOWN = frozenset({"index", "delta", "message", "logprobs", "finish_reason"})


class _ToolCall:
    __slots__ = ("args", "extra", "function", "function_seen", "id", "index", "order", "type")

    def __init__(self, index: int | None, order: int) -> None:
        self.index = index
        self.order = order
        self.id: str | None = None
        self.type: str | None = None
        self.function: dict[str, Any] = {}  # name and any extra function fields
        self.function_seen = False
        self.args: list[str] | None = None
        self.extra: dict[str, Any] = {}

    def merge(self, delta: dict[str, Any]) -> None:
        for key, value in delta.items():
            if key == "function":
                self.function_seen = True
                if not isinstance(value, dict):
                    continue
                for fkey, fvalue in value.items():
                    if fkey == "arguments":
                        if self.args is None:
                            self.args = []
                        if isinstance(fvalue, str):
                            self.args.append(fvalue)
                        elif fvalue is not None:  # some servers send parsed arguments
                            self.args.append(encode_json(fvalue))
                    elif fvalue not in (None, "") and self.function.get(fkey) in (None, ""):
                        # name (and anything else) is taken once: llama-cpp-python repeats it in
                        # every delta, and concatenating would give "weatherweather…"
                        self.function[fkey] = fvalue
                    else:
                        self.function.setdefault(fkey, fvalue)
            elif key == "id":
                if value is not None and not self.id:
                    self.id = value
            elif key == "type":
                if value is not None and not self.type:
                    self.type = value
            elif key != "index" and (value is not None or key not in self.extra):
                self.extra[key] = value

    def build(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        if self.type is not None:
            out["type"] = self.type
        if self.function_seen:
            fn = dict(self.function)
            if self.args is not None:
                fn["arguments"] = "".join(self.args)
            out["function"] = fn
        out.update(self.extra)
        return out


class _Choice:
    __slots__ = (
        "audio",
        "calls",
        "calls_by_index",
        "extra",
        "finish_reason",
        "function_args",
        "function_call",
        "generated",
        "index",
        "logprobs",
        "logprobs_seen",
        "other",
        "role",
        "seen",
        "text",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.text: dict[str, list[str]] = {}
        self.other: dict[str, Any] = {}
        self.seen: dict[str, None] = {}  # message keys in first-seen order
        self.calls: list[_ToolCall] = []
        self.calls_by_index: dict[int, _ToolCall] = {}
        self.function_call: dict[str, Any] | None = None
        self.function_args: list[str] = []
        self.audio: dict[str, Any] | None = None
        self.logprobs: dict[str, Any] | None = None
        self.logprobs_seen = False
        self.finish_reason: str | None = None
        self.extra: dict[str, Any] = {}
        self.generated = 0  # deltas that carried generated text, tool calls or audio

    def merge(self, choice: dict[str, Any]) -> None:
        for key, value in choice.items():
            if key == "delta":
                if value:
                    self.merge_delta(value)
            elif key == "finish_reason":
                if value is not None:
                    self.finish_reason = value
            elif key == "logprobs":
                self.logprobs_seen = True
                if isinstance(value, dict):
                    self.logprobs = merge_logprobs(self.logprobs, value)
            elif key != "index" and (value is not None or key not in self.extra):
                self.extra[key] = value

    def merge_delta(self, delta: dict[str, Any]) -> None:
        seen = self.seen
        if any(delta.get(k) for k in GENERATED):
            self.generated += 1
        for key, value in delta.items():
            if key not in seen:
                seen[key] = None
            if value is None:
                continue
            if key == "role":
                if not self.role:
                    self.role = value
            elif isinstance(value, str):
                parts = self.text.get(key)
                if parts is None:
                    self.text[key] = [value]
                else:
                    parts.append(value)
            elif key == "tool_calls":
                self.merge_tool_calls(value)
            elif key == "function_call":
                self.merge_function_call(value)
            elif key == "audio" and isinstance(value, dict):
                self.merge_audio(value)
            elif isinstance(value, list):
                self.other[key] = merge_list(self.other.get(key), value)
            else:
                self.other[key] = value

    def merge_tool_calls(self, deltas: Any) -> None:
        """Tool calls are merged by ``index``; id/type/name are taken once, arguments appended.

        A delta without ``index`` starts a new call when it carries an ``id`` (or no call exists
        yet) and continues the last call otherwise.
        """
        if not isinstance(deltas, list):
            self.other.setdefault("tool_calls", deltas)
            return
        if not deltas:
            self.other.setdefault("tool_calls", [])
            return
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            call: _ToolCall | None
            if isinstance(index, int):
                call = self.calls_by_index.get(index)
                if call is None:
                    call = self.calls_by_index[index] = _ToolCall(index, len(self.calls))
                    self.calls.append(call)
            elif delta.get("id") or not self.calls:
                call = _ToolCall(None, len(self.calls))
                self.calls.append(call)
            else:
                call = self.calls[-1]
            call.merge(delta)

    def merge_function_call(self, value: Any) -> None:
        if not isinstance(value, dict):
            return
        if self.function_call is None:
            self.function_call = {}
        for key, item in value.items():
            if key == "arguments":
                if isinstance(item, str):
                    self.function_args.append(item)
                self.function_call.setdefault("arguments", None)
            elif item not in (None, "") and self.function_call.get(key) in (None, ""):
                self.function_call[key] = item
            else:
                self.function_call.setdefault(key, item)

    def merge_audio(self, value: dict[str, Any]) -> None:
        if self.audio is None:
            self.audio = {}
        for key, item in value.items():
            if key in ("data", "transcript") and isinstance(item, str):
                self.audio[key] = self.audio.get(key, "") + item
            elif item is not None and self.audio.get(key) is None:
                self.audio[key] = item
            else:
                self.audio.setdefault(key, item)

    def answered_otherwise(self) -> bool:
        """The choice answered with tool calls, a function call, a refusal or audio."""
        return bool(self.calls or self.audio) or self.function_call is not None or "refusal" in self.text

    def build(self, complete: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role or "assistant", "content": None}
        for key in self.seen:
            if key == "role":
                continue
            parts = self.text.get(key)
            if parts is not None:
                message[key] = "".join(parts)
            elif key == "tool_calls" and self.calls:
                calls = self.calls
                if all(c.index is not None for c in calls):
                    calls = sorted(calls, key=lambda c: c.index or 0)
                message[key] = [c.build() for c in calls]
            elif key == "function_call" and self.function_call is not None:
                fc = dict(self.function_call)
                if "arguments" in fc:
                    fc["arguments"] = "".join(self.function_args)
                message[key] = fc
            elif key == "audio" and self.audio is not None:
                message[key] = dict(self.audio)
            else:
                message[key] = self.other.get(key)
        if "content" not in self.seen and not self.answered_otherwise():
            # no content delta at all: the upstream's own non-stream body says "" (null is kept
            # when the stream sent it, and beside tool calls, a refusal or audio, as OpenAI's
            # non-stream body has it)
            message["content"] = ""
        choice: dict[str, Any] = {"index": self.index, "message": message}
        if self.logprobs_seen:
            choice["logprobs"] = self.logprobs
        finish = self.finish_reason
        if finish is None and complete:
            if self.calls:
                finish = "tool_calls"
            elif self.function_call is not None:
                finish = "function_call"
            else:
                finish = "stop"
        choice["finish_reason"] = finish
        choice.update(self.extra)
        return choice


class Aggregator(ChoicesAggregator):
    choice_class = _Choice


def promote_tool_calls(resp: dict[str, Any]) -> int:
    """Move tool calls found in a later choice into ``choices[0]`` when it has none (some servers
    put them in choice 1+, and clients read only choice 0). Returns the index they came from,
    0 when nothing moved."""
    choices = resp.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        return 0
    first = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(first, dict) or first.get("tool_calls"):
        return 0
    for i, choice in enumerate(choices[1:], start=1):
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and message.get("tool_calls"):
            first["tool_calls"] = message.pop("tool_calls")
            choices[0]["finish_reason"] = "tool_calls"
            return i
    return 0


def merge_list(cur: Any, items: list[Any]) -> list[Any]:
    """Append the items of a list-valued delta field (e.g. ``annotations``). Items that carry an
    integer ``index`` (OpenRouter's ``reasoning_details``) continue the item with the same index
    and type: their strings are appended, except ``type``/``format``/``id`` which are kept once."""
    out: list[Any] = cur if isinstance(cur, list) else []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("index"), int):
            target = next(
                (
                    o
                    for o in reversed(out)
                    if isinstance(o, dict)
                    and o.get("index") == item["index"]
                    and item.get("type") in (None, o.get("type"))
                ),
                None,
            )
            if target is not None:
                for key, value in item.items():
                    old = target.get(key)
                    if isinstance(value, str) and isinstance(old, str) and key not in _KEPT_ONCE:
                        target[key] = old + value
                    elif value is not None and old in (None, ""):
                        target[key] = value
                continue
            item = dict(item)
        out.append(item)
    return out


_KEPT_ONCE = frozenset({"type", "format", "id", "index"})


# -- synthesize ---------------------------------------------------------------------------------


def check_response(resp: Any) -> list[dict[str, Any]]:
    """The choices of a chat.completion body, or ``BadResponse`` naming what is missing."""
    if not isinstance(resp, dict):
        raise BadResponse(f"response is {type(resp).__name__}, not a JSON object")
    choices = resp.get("choices")
    if not isinstance(choices, list):
        raise BadResponse("response has no 'choices' list: not a chat.completion")
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise BadResponse(f"choices[{i}] has no 'message' object: not a chat.completion")
    return choices


def _choice_chunks(choice: dict[str, Any], chunk_chars: int) -> Iterator[dict[str, Any]]:
    index = choice.get("index", 0)
    message: dict[str, Any] = choice["message"]
    has_lp = "logprobs" in choice
    lp = choice.get("logprobs")
    lp_dict = lp if isinstance(lp, dict) else None

    def out(delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
        c: dict[str, Any] = {"index": index, "delta": delta}
        if has_lp:
            c["logprobs"] = logprobs
        c["finish_reason"] = None
        return c

    # First chunk: role, plus every field that is not streamed piecewise (kept whole, once).
    first: dict[str, Any] = {"role": message.get("role", "assistant")}
    for key, value in message.items():
        if key == "role":
            continue
        if key in STREAMED_TEXT and isinstance(value, str) and value:
            continue
        if key == "tool_calls" and isinstance(value, list) and value:
            continue
        if key == "function_call" and isinstance(value, dict):
            continue
        if key in ("annotations", "audio") and value:
            continue
        first[key] = value
    first_lp: Any = None
    if lp_dict is not None:
        # every logprobs key once, lists empty: the pieces below append their tokens
        first_lp = {k: ([] if isinstance(v, list) else v) for k, v in lp_dict.items()}
    yield out(first, first_lp)

    leftover: dict[str, list[Any]] = {}
    for key in STREAMED_TEXT:
        text = message.get(key)
        if not (isinstance(text, str) and text):
            continue
        lp_key = next((k for k, f in LOGPROB_TEXT.items() if f == key), None)
        entries = lp_dict.get(lp_key) if lp_dict is not None and lp_key else None
        if not isinstance(entries, list):
            entries = None
        tokens = [e.get("token", "") if isinstance(e, dict) else "" for e in entries] if entries else None
        for piece, a, b in pieces_with_tokens(text, tokens, chunk_chars):
            piece_lp = {lp_key: entries[a:b]} if entries and b > a and lp_key else None
            yield out({key: piece}, piece_lp)
    if lp_dict is not None:
        for lp_key, field in LOGPROB_TEXT.items():
            entries = lp_dict.get(lp_key)
            text = message.get(field)
            if isinstance(entries, list) and entries and not (isinstance(text, str) and text):
                leftover[lp_key] = entries

    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for pos, call in enumerate(calls):
            yield from (out({"tool_calls": [d]}) for d in _tool_call_deltas(pos, call, chunk_chars))

    fc = message.get("function_call")
    if isinstance(fc, dict):
        args = fc.get("arguments")
        head = {k: v for k, v in fc.items() if k != "arguments"}
        if isinstance(args, str):
            yield out({"function_call": {**head, "arguments": ""}})
            for piece in split_text(args, chunk_chars):
                if piece:
                    yield out({"function_call": {"arguments": piece}})
        else:
            yield out({"function_call": fc})

    for key in ("annotations", "audio"):
        value = message.get(key)
        if value:
            yield out({key: value})

    final = out({}, leftover or None)
    final["finish_reason"] = choice.get("finish_reason")
    for key, value in choice.items():
        if key not in _CHOICE_KNOWN:
            final[key] = value
    yield final


def _tool_call_deltas(pos: int, call: Any, chunk_chars: int) -> Iterator[dict[str, Any]]:
    """First delta: index, id, type, name and ``"arguments": ""``, as OpenAI (and llama.cpp)
    stream it; then the arguments in pieces. Never a placeholder such as ``{}`` (strict clients
    finish a call as soon as its arguments parse), and never the first piece beside the name
    (loops written against OpenAI's shape would take it twice)."""
    if not isinstance(call, dict):
        raise BadResponse(f"tool_calls[{pos}] is not an object")
    fn = call.get("function")
    first: dict[str, Any] = {"index": pos}
    for key, value in call.items():
        if key not in ("function", "index"):
            first[key] = value
    rest: list[str] = []
    if isinstance(fn, dict):
        head = {k: v for k, v in fn.items() if k != "arguments"}
        if "arguments" in fn:
            args = fn["arguments"]
            if not isinstance(args, str):
                args = encode_json(args)
            head["arguments"] = ""
            rest = [p for p in split_text(args, chunk_chars) if p]
        first["function"] = head
    elif "function" in call:
        first["function"] = fn
    yield first
    for piece in rest:
        yield {"index": pos, "function": {"arguments": piece}}


# -- the dialect ----------------------------------------------------------------------------------


class Chat(OpenAIDialect):
    """OpenAI chat completions: ``chat.completion.chunk`` streams ⇄ one ``chat.completion``."""

    name = "chat"
    title = "OpenAI chat completions"
    path_suffixes = ("/chat/completions",)
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    prompt_keys = ("messages", "tools", "functions")

    def is_choice(self, choice: dict[str, Any]) -> bool:
        return "delta" in choice or "message" in choice

    aggregator_class = Aggregator
    check_response = staticmethod(check_response)
    choice_chunks = staticmethod(_choice_chunks)

    def choice_output(self, choice: dict[str, Any]) -> Output:
        m = choice.get("message")
        m = m if isinstance(m, dict) else {}
        parts: list[tuple[str, str, Any]] = [("text", "content", m.get("content", choice.get("text")))]
        for key in ("reasoning_content", "reasoning", "refusal"):
            if m.get(key):
                parts.append(("refusal" if key == "refusal" else "reasoning", key, m[key]))
        out = Output(0, parts, finish=choice.get("finish_reason"))
        for tc in m.get("tool_calls") or []:
            if isinstance(tc, dict):
                fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
                kind = tc.get("type") if tc.get("type") not in (None, "function") else None
                out.tool_calls.append(ToolCall(fn.get("name"), fn.get("arguments"), tc.get("id"), kind))
        fc = m.get("function_call")
        if isinstance(fc, dict):
            out.legacy_call = ToolCall(fc.get("name"), fc.get("arguments"))
        return out

    def promote_tool_calls(self, response: dict[str, Any]) -> int:
        return promote_tool_calls(response)


DIALECT = Chat()
