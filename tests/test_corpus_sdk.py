"""Differential test: our aggregator against the openai SDK's ``ChatCompletionStreamState`` on every
recorded chat stream in ../shared/corpus. Wherever the two differ, the difference must be one of
the SDK's named quirks, and the test checks our value is the correct one."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from corpus import Recorded, ids, recorded, require_corpus
from streamshim import aggregate, synthesize
from streamshim.framing.sse import SSEDecoder

openai = pytest.importorskip("openai")
from openai._models import construct_type  # noqa: E402
from openai.lib.streaming.chat import ChatCompletionStreamState  # noqa: E402
from openai.types.chat import ChatCompletionChunk  # noqa: E402

STREAMS = tuple(r for r in recorded("chat") if r.mode == "stream")
JSON_BODIES = tuple(r for r in recorded("chat") if r.mode == "json" and r.status == 200)


def chunks_of(body: bytes) -> list[dict[str, Any]]:
    dec = SSEDecoder()
    out = []
    for ev in [*dec.feed(body), *dec.close()]:
        if ev.data == "[DONE]":
            break
        out.append(json.loads(ev.data))
    return out


def sdk_final(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    state = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=c))
    dumped: dict[str, Any] = state.get_final_completion().model_dump(mode="json", exclude_unset=True)
    return dumped


def project(x: Any, parent: str = "") -> Any:
    """Both sides without null fields and without what only the SDK adds: its parse-mode fields
    and the stream-only ``index`` it leaves in each tool call."""
    if isinstance(x, dict):
        drop = {"parsed", "parsed_arguments"} | ({"index"} if parent == "tool_calls" else set())
        return {k: project(v, k) for k, v in x.items() if v is not None and k not in drop}
    if isinstance(x, list):
        return [project(v, parent) for v in x]
    return x


MISSING = object()


def diffs(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    missing = MISSING
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in [*a, *(k for k in b if k not in a)]:
            out += diffs(a.get(k, missing), b.get(k, missing), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in diffs(x, y, f"{path}[{i}]")]
    if a is missing:
        a = "<absent>"
    if b is missing:
        b = "<absent>"
    return [] if a == b else [(path, a, b)]


def _deltas(chunks: list[dict[str, Any]], choice: int) -> list[dict[str, Any]]:
    return [
        c.get("delta") or {} for ch in chunks for c in ch.get("choices") or [] if c.get("index", 0) == choice
    ]


def _choice_values(chunks: list[dict[str, Any]], choice: int, key: str) -> list[Any]:
    return [
        c[key]
        for ch in chunks
        for c in ch.get("choices") or []
        if c.get("index", 0) == choice and c.get(key) is not None
    ]


def explain(path: str, ours: Any, sdk: Any, chunks: list[dict[str, Any]]) -> str | None:
    """The SDK quirk behind one difference, after checking that our value is the right one."""
    if m := re.fullmatch(r"\.choices\[(\d+)\]\.message\.role", path):
        roles = [d["role"] for d in _deltas(chunks, int(m[1])) if d.get("role")]
        if len(roles) > 1 and sdk == "".join(roles) and ours == roles[0]:
            return "role repeated in every chunk is concatenated"
    if (
        re.fullmatch(r"\.choices\[(\d+)\]\.message\.tool_calls\[(\d+)\]\.(id|function\.name)", path)
        and isinstance(sdk, str)
        and len(sdk) > len(ours)
        and sdk == ours * (len(sdk) // len(ours))
    ):
        return "tool-call id/name repeated in every delta is concatenated"
    if m := re.fullmatch(r"\.(id|model|created)", path):
        first_good = next(c[m[1]] for c in chunks if c.get(m[1]) not in (None, "", 0))
        if sdk in ("", 0, "<absent>") and ours == first_good:
            return "id/model/created taken from the first chunk only (Azure content-filter chunk)"
    if m := re.fullmatch(r"\.([A-Za-z_]+)(\..*)?", path):
        key = m[1]
        if key == "obfuscation" and ours == "<absent>":
            return "keeps OpenAI's obfuscation padding (we drop it by design)"
        later = [c[key] for c in chunks if c.get(key) is not None]
        if key not in chunks[0] or chunks[0][key] is None or isinstance(ours, dict | str | int):
            if sdk == "<absent>" and later and ours == later[-1]:
                return "top-level fields absent from the first chunk are dropped"
            if m[2] and later and any(_get(v, m[2]) == ours for v in later) and sdk == "<absent>":
                return "top-level fields absent from the first chunk are dropped"
    if m := re.fullmatch(r"\.choices\[(\d+)\]\.([a-z_]+)", path):
        values = _choice_values(chunks, int(m[1]), m[2])
        if sdk == "<absent>" and values and ours == values[-1]:
            return "choice-level provider fields are dropped"
    if (
        re.fullmatch(r"\.choices\[(\d+)\]\.message\.reasoning_details\[(\d+)\]\.(format|type|id)", path)
        and isinstance(sdk, str)
        and len(sdk) > len(ours)
        and sdk.replace(ours, "") == ""
    ):
        return "string fields of indexed list items (reasoning_details) are concatenated"
    if m := re.fullmatch(r"\.choices\[(\d+)\]\.message\.reasoning_details", path):
        types = {
            d2.get("type") for d in _deltas(chunks, int(m[1])) for d2 in d.get("reasoning_details") or []
        }
        if len(types) > 1 and len(ours) == len(types):
            return "reasoning_details items of another type at the same index are merged into one"
    return None


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


RAISING_QUIRKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    # quirk → the check that our answer is right in that case
    "finish_reason 'length' raises LengthFinishReasonError (a parse-mode feature)": lambda ours: any(
        c["finish_reason"] == "length" for c in ours["choices"]
    ),
}


def compare(rec: Recorded) -> tuple[str, list[str]]:
    chunks = chunks_of(rec.body)
    ours = aggregate(rec.body, "chat")
    try:
        theirs = sdk_final(chunks)
    except Exception as exc:
        name = next((q for q in RAISING_QUIRKS if type(exc).__name__ in q), None)
        assert name is not None, f"{rec.name}: the SDK raised {exc!r}, which is not a known quirk"
        assert RAISING_QUIRKS[name](ours), f"{rec.name}: {name}, and our answer is not right either"
        return "sdk-raised", [name]
    found = []
    for path, a, b in diffs(project(ours), project(theirs)):
        quirk = explain(path, a, b, chunks)
        assert quirk is not None, f"{rec.name}: unexplained difference at {path}: ours={a!r} sdk={b!r}"
        found.append(quirk)
    return ("same" if not found else "quirks"), sorted(set(found))


@pytest.mark.parametrize("rec", STREAMS, ids=ids(STREAMS))
def test_agrees_with_sdk_except_named_quirks(rec: Recorded) -> None:
    compare(rec)


def test_corpus_summary() -> None:
    require_corpus()
    outcomes = Counter()
    quirks: Counter[str] = Counter()
    for rec in STREAMS:
        kind, names = compare(rec)
        outcomes[kind] += 1
        quirks.update(names)
    print("\ncorpus chat streams:", dict(outcomes))
    for q, n in quirks.most_common():
        print(f"  {n:4d}  {q}")
    assert sum(outcomes.values()) == len(STREAMS) >= 150
    assert outcomes["same"] >= 20


@pytest.mark.parametrize("rec", JSON_BODIES, ids=ids(JSON_BODIES))
def test_recorded_json_bodies_round_trip(rec: Recorded) -> None:
    """Every real non-stream answer survives synthesize → aggregate. Two things a stream cannot
    carry are normalised in the expectation: a tool call's ``index`` (some upstreams put it in the
    non-stream body; in a stream it is the merge key, and OpenAI's own body has none) and an
    absent ``content`` (aggregation always writes ``content``, null when none came)."""
    resp = json.loads(rec.body)
    expected = json.loads(rec.body)
    expected["object"] = "chat.completion"
    for choice in expected["choices"]:
        choice["message"].setdefault("content", None)
        for call in choice["message"].get("tool_calls") or []:
            call.pop("index", None)
    assert aggregate(synthesize(resp, "chat", usage=True), "chat") == expected


def test_corpus_present_or_skipped_clearly() -> None:
    require_corpus()
    assert len(STREAMS) > 0 and len(JSON_BODIES) > 0
