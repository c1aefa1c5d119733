"""OpenAI legacy completions (``/v1/completions``): ``text_completion`` streams ⇄ one
``text_completion`` body. Legacy logprobs (``tokens``, ``token_logprobs``, ``top_logprobs``,
``text_offset``) are parallel arrays: aggregation appends them, synthesis slices them along
with the text pieces they describe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import BadResponse
from .base import Output
from .openai import (
    ChoicesAggregator,
    OpenAIDialect,
    merge_logprobs,
    pieces_with_tokens,
)

_CHOICE_KNOWN = frozenset({"text", "index", "logprobs", "finish_reason"})


class _Choice:
    __slots__ = (
        "extra",
        "finish_reason",
        "generated",
        "index",
        "logprobs",
        "logprobs_seen",
        "text",
        "text_seen",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.text: list[str] = []
        self.text_seen = False
        self.logprobs: dict[str, Any] | None = None
        self.logprobs_seen = False
        self.finish_reason: str | None = None
        self.extra: dict[str, Any] = {}
        self.generated = 0  # chunks that carried text

    def merge(self, choice: dict[str, Any]) -> None:
        for key, value in choice.items():
            if key == "text":
                if isinstance(value, str):
                    self.text.append(value)
                    self.text_seen = True
                    self.generated += bool(value)
            elif key == "finish_reason":
                if value is not None:
                    self.finish_reason = value
            elif key == "logprobs":
                self.logprobs_seen = True
                if isinstance(value, dict):
                    self.logprobs = merge_logprobs(self.logprobs, value)
            elif key != "index" and (value is not None or key not in self.extra):
                self.extra[key] = value

    def build(self, complete: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"text": "".join(self.text) if self.text_seen else None, "index": self.index}
        if self.logprobs_seen:
            out["logprobs"] = self.logprobs
        finish = self.finish_reason
        if finish is None and complete:
            finish = "stop"
        out["finish_reason"] = finish
        out.update(self.extra)
        return out


class Aggregator(ChoicesAggregator):
    choice_class = _Choice


def check_response(resp: Any) -> list[dict[str, Any]]:
    if not isinstance(resp, dict):
        raise BadResponse(f"response is {type(resp).__name__}, not a JSON object")
    choices = resp.get("choices")
    if not isinstance(choices, list):
        raise BadResponse("response has no 'choices' list: not a text_completion")
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict) or "text" not in choice:
            raise BadResponse(f"choices[{i}] has no 'text': not a text_completion")
    return choices


def _choice_chunks(choice: dict[str, Any], chunk_chars: int) -> Iterator[dict[str, Any]]:
    index = choice.get("index", 0)
    text = choice.get("text")
    has_lp = "logprobs" in choice
    lp = choice.get("logprobs")
    lp_dict = lp if isinstance(lp, dict) else None
    tokens = lp_dict.get("tokens") if lp_dict else None
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        tokens = None
    n_tok = len(tokens) if tokens is not None else -1
    # arrays parallel to ``tokens`` are sliced with the text; anything else rides on the end
    aligned = {k for k, v in (lp_dict or {}).items() if isinstance(v, list) and len(v) == n_tok}
    pieces = pieces_with_tokens(text, tokens, chunk_chars) if isinstance(text, str) else [(text, 0, 0)]
    for n, (piece, a, b) in enumerate(pieces):
        c: dict[str, Any] = {"text": piece, "index": index}
        if has_lp:
            if lp_dict is None:
                c["logprobs"] = lp
            elif n == 0:
                c["logprobs"] = {
                    k: (v[a:b] if k in aligned else [] if isinstance(v, list) else v)
                    for k, v in lp_dict.items()
                }
            else:
                c["logprobs"] = {k: lp_dict[k][a:b] for k in aligned} if b > a else None
        c["finish_reason"] = None
        yield c
    final: dict[str, Any] = {"text": "", "index": index}
    if has_lp:
        rest = {k: v for k, v in (lp_dict or {}).items() if isinstance(v, list) and k not in aligned and v}
        final["logprobs"] = rest or None
    final["finish_reason"] = choice.get("finish_reason")
    for key, value in choice.items():
        if key not in _CHOICE_KNOWN:
            final[key] = value
    yield final


# -- the dialect ----------------------------------------------------------------------------------


class Completions(OpenAIDialect):
    """OpenAI legacy completions: ``text_completion`` streams ⇄ one ``text_completion`` body."""

    name = "completions"
    title = "OpenAI legacy completions"
    path_suffixes = ("/completions",)
    object_name = "text_completion"
    chunk_object = "text_completion"  # legacy streams reuse the non-stream object name
    prompt_keys = ("prompt", "suffix")

    def is_choice(self, choice: dict[str, Any]) -> bool:
        return "text" in choice and "delta" not in choice and "message" not in choice

    aggregator_class = Aggregator
    check_response = staticmethod(check_response)
    choice_chunks = staticmethod(_choice_chunks)

    def choice_output(self, choice: dict[str, Any]) -> Output:
        return Output(0, [("text", "text", choice.get("text"))], finish=choice.get("finish_reason"))


DIALECT = Completions()
