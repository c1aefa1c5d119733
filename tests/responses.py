"""Generated valid non-stream responses of every registered dialect (hypothesis strategies):
the contract test (test_contract.py) runs every dialect's properties over them. A new dialect
adds its strategy to ``RESPONSES``; the contract test fails until it does."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from hypothesis import strategies as st

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_token = st.fixed_dictionaries(
    {
        "token": st.text(max_size=4),
        "logprob": st.floats(-20, 0),
        "bytes": st.one_of(st.none(), st.lists(st.integers(0, 255), max_size=4)),
        "top_logprobs": st.just([]),
    }
)


@st.composite
def _tool_call(draw: st.DrawFn, json_arguments: bool = False) -> dict[str, Any]:
    as_json = st.dictionaries(st.text(max_size=5), st.integers()).map(json.dumps)
    args = draw(as_json if json_arguments else st.one_of(_text, as_json))
    return {
        "id": draw(st.text("abc_0123", min_size=1, max_size=10)),
        "type": "function",
        "function": {"name": draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True)), "arguments": args},
    }


@st.composite
def _choice(draw: st.DrawFn, index: int, json_arguments: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.one_of(st.none(), _text))}
    if draw(st.booleans()):
        message[draw(st.sampled_from(["reasoning_content", "reasoning"]))] = draw(_text)
    if draw(st.booleans()):
        message["refusal"] = draw(st.one_of(st.none(), _text))
    calls = draw(st.lists(_tool_call(json_arguments), max_size=3))
    if calls:
        message["tool_calls"] = calls
    choice: dict[str, Any] = {"index": index, "message": message}
    if draw(st.booleans()):
        if draw(st.booleans()):
            choice["logprobs"] = None
        else:
            content = message["content"] or ""
            toks = draw(st.one_of(st.just(None), st.lists(_token, max_size=6)))
            if toks is None and content:  # tokens that spell the content, as real servers send
                cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=5)))
                bounds = [0, *cuts, len(content)]
                toks = [
                    {"token": content[a:b], "logprob": -1.0, "bytes": None, "top_logprobs": []}
                    for a, b in pairwise(bounds)
                ]
            choice["logprobs"] = {"content": toks or [], "refusal": None}
    choice["finish_reason"] = draw(st.sampled_from(["tool_calls" if calls else "stop", "length", "stop"]))
    return choice


@st.composite
def chat_completions(draw: st.DrawFn, json_arguments: bool = False) -> dict[str, Any]:
    """Chat completions; ``json_arguments``: tool-call arguments are JSON, as the API's contract
    says (otherwise any text, which a round trip must keep too)."""
    n = draw(st.integers(1, 3))
    resp: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=12)),
        "object": "chat.completion",
        "created": draw(st.integers(1, 2**31)),
        "model": draw(st.text(min_size=1, max_size=12)),
        "choices": [draw(_choice(i, json_arguments)) for i in range(n)],
    }
    if draw(st.booleans()):
        resp["usage"] = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    if draw(st.booleans()):
        resp["system_fingerprint"] = draw(st.one_of(st.none(), st.text(max_size=8)))
    return resp


_short_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def text_completions(draw: st.DrawFn) -> dict[str, Any]:
    choices = []
    for i in range(draw(st.integers(1, 3))):
        text = draw(_short_text)
        c: dict[str, Any] = {"text": text, "index": i}
        if draw(st.booleans()):
            cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
            bounds = [0, *cuts, len(text)]
            toks = [text[a:b] for a, b in pairwise(bounds)]
            if draw(st.booleans()):
                toks = draw(st.lists(st.text(max_size=3), max_size=4))  # tokens that don't spell it
            c["logprobs"] = {
                "tokens": toks,
                "token_logprobs": [-1.0] * len(toks),
                "top_logprobs": [None] * len(toks),
                "text_offset": list(range(len(toks))),
            }
        else:
            c["logprobs"] = None
        c["finish_reason"] = draw(st.sampled_from(["stop", "length"]))
        choices.append(c)
    resp = {"id": "cmpl-x", "object": "text_completion", "created": 1, "model": "m", "choices": choices}
    if draw(st.booleans()):
        resp["usage"] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    return resp


_ident = st.text("abcdef0123456789", min_size=1, max_size=8)


@st.composite
def _output_text(draw: st.DrawFn) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "annotations": [], "logprobs": [], "text": draw(_text)}
    if draw(st.booleans()):
        part["annotations"] = [
            {
                "type": "url_citation",
                "start_index": 0,
                "end_index": 1,
                "title": draw(_text),
                "url": "https://x.test",
            }
        ]
    return part


@st.composite
def _response_item(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["message", "function_call", "reasoning", "web_search_call", "custom_tool_call"])
    )
    item_id = f"{kind[:2]}_{index}_{draw(_ident)}"
    if kind == "message":
        parts = draw(st.lists(_output_text(), min_size=1, max_size=2))
        if draw(st.booleans()):
            parts.append({"type": "refusal", "refusal": draw(_text)})
        return {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": parts,
        }
    if kind == "function_call":
        args = json.dumps(draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
        name = draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
        return {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "arguments": args,
            "call_id": f"call_{draw(_ident)}",
            "name": name,
        }
    if kind == "reasoning":
        item: dict[str, Any] = {
            "id": item_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": t} for t in draw(st.lists(_text, max_size=2))],
        }
        if draw(st.booleans()):
            item["content"] = [{"type": "reasoning_text", "text": draw(_text)}]
        if draw(st.booleans()):
            item["encrypted_content"] = draw(_ident)
        return item
    if kind == "web_search_call":
        action = {"type": "search", "query": draw(_text)}
        return {"id": item_id, "type": "web_search_call", "status": "completed", "action": action}
    return {
        "id": item_id,
        "type": "custom_tool_call",
        "call_id": f"call_{draw(_ident)}",
        "name": "grammar",
        "input": draw(_text),
    }


@st.composite
def responses_api(draw: st.DrawFn) -> dict[str, Any]:
    """Responses API bodies (``object: response``): text, refusals, annotations, function calls,
    reasoning (summary, raw text, encrypted), hosted and custom tool calls; completed or
    incomplete."""
    status = draw(st.sampled_from(["completed", "completed", "incomplete"]))
    resp: dict[str, Any] = {
        "id": f"resp_{draw(_ident)}",
        "object": "response",
        "created_at": draw(st.integers(1, 2**31)),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": draw(st.text(min_size=1, max_size=12)),
        "output": [draw(_response_item(i)) for i in range(draw(st.integers(0, 4)))],
    }
    if draw(st.booleans()):
        resp["usage"] = {
            "input_tokens": 3,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 1},
            "total_tokens": 8,
        }
    if draw(st.booleans()):
        resp["completed_at"] = resp["created_at"] + 1
    return resp


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_citation = st.fixed_dictionaries(
    {
        "type": st.just("web_search_result_location"),
        "cited_text": _text,
        "url": st.just("https://example.org/"),
    }
)


@st.composite
def _anthropic_block(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["text", "text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "result"]
        )
    )
    if kind == "text":
        block: dict[str, Any] = {"type": "text", "text": draw(_text)}
        if draw(st.booleans()):
            block["citations"] = draw(st.one_of(st.none(), st.lists(_citation, max_size=2)))
        return block
    if kind == "thinking":
        block = {"type": "thinking", "thinking": draw(_text)}
        if draw(st.integers(0, 4)):  # llama.cpp's empty signature and none at all happen too
            block["signature"] = draw(st.text("abcXYZ019+/=", max_size=20))
        return block
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": draw(st.text("abcXYZ019+/=", min_size=1, max_size=20))}
    if kind == "result":
        return {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": draw(
                st.lists(st.dictionaries(st.text(max_size=5), _json_value, max_size=3), max_size=2)
            ),
        }
    block = {
        "type": kind,
        "id": draw(st.text("abc_0123", min_size=1, max_size=10)),
        "name": draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True)),
        "input": draw(st.dictionaries(st.text(max_size=5), _json_value, max_size=4)),
    }
    if draw(st.booleans()):
        block["caller"] = {"type": "direct"}
    return block


@st.composite
def anthropic_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Anthropic Messages bodies: every block kind the API streams or sends whole, the usage
    fields real servers send (Anthropic's and llama.cpp's), stop fields as the wire has them."""
    usage: dict[str, Any] = {
        "input_tokens": draw(st.integers(0, 10**6)),
        "output_tokens": draw(st.integers(0, 10**5)),
    }
    for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        if draw(st.booleans()):
            usage[key] = draw(st.integers(0, 10**5))
    if draw(st.booleans()):
        usage["service_tier"] = "standard"
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    if draw(st.booleans()):
        usage["server_tool_use"] = {"web_search_requests": draw(st.integers(0, 3))}
    msg: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=12)),
        "type": "message",
        "role": "assistant",
        "model": draw(st.text(min_size=1, max_size=12)),
        "content": draw(st.lists(_anthropic_block(), max_size=4)),
        "stop_reason": draw(
            st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence", "pause_turn"])
        ),
        "stop_sequence": draw(st.one_of(st.none(), st.text(min_size=1, max_size=4))),
        "usage": usage,
    }
    if draw(st.booleans()):
        msg["container"] = draw(st.one_of(st.none(), st.fixed_dictionaries({"id": st.text(max_size=6)})))
    return msg


# valid responses of each dialect, as its API's contract describes them
RESPONSES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "chat": chat_completions(json_arguments=True),
    "completions": text_completions(),
    "responses": responses_api(),
    "anthropic": anthropic_messages(),
}
