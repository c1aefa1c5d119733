"""End to end against a real server: llama-cpp-python's ``llama_cpp.server`` on a tiny generated
GGUF, through a real mitmdump with the addon, driven by the real openai SDK.

With temperature 0 the server's stream and non-stream answers are identical, so the answer
through each rule must equal the direct answer of the shape the client asked for. This server
repeats tool-call id and name in every delta and ignores ``stream_options.include_usage``: the
tests show both, and that streamshim handles them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama import LlamaServer, llama_python
from proxy import Mitmdump
from streamshim.mitm.recording import write_flows
from test_cli import run as run_cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RULES = """\
rules:
  - name: llama-stream
    listen_port: {stream}
    upstream: stream
  - name: llama-json
    listen_port: {json}
    upstream: json
  - name: llama-repair
    listen_port: {repair}
    upstream: as-requested
    repair: true
  - name: llama-as-requested
    upstream: as-requested
"""
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CHOICE = {"type": "function", "function": {"name": "get_weather"}}
BASE: dict[str, Any] = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "temperature": 0,
    "seed": 7,
    "max_tokens": 16,
}
CASES = {
    "text": {},
    "length": {"max_tokens": 2},
    "tool": {"tools": TOOLS, "tool_choice": TOOL_CHOICE},
}


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    python = llama_python()
    if python is None:
        pytest.skip("llama-cpp-python is not installed here (pip install -e '.[server]'; tests/run.sh does)")
    server = LlamaServer(tmp_path_factory.mktemp("llama"), python).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(llama: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    m = Mitmdump(
        tmp_path_factory.mktemp("mitm-llama"),
        {k: llama.url for k in ("stream", "json", "repair", "asis")},
        RULES,
    )
    m.start()
    yield m
    m.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-llama-test", max_retries=0, timeout=60)


def meaning(msg: Any, finish: str | None) -> dict[str, Any]:
    calls = [(c.function.name, c.function.arguments) for c in (msg.tool_calls or [])]
    return {"content": msg.content or "", "tool_calls": calls, "finish_reason": finish}


def streamed(c: openai.OpenAI, **kw: Any) -> tuple[dict[str, Any], list[Any]]:
    """Consume a stream by hand (not the SDK helper), merging tool calls by index correctly."""
    chunks = list(c.chat.completions.create(stream=True, **kw))
    content, finish, calls = "", None, {}
    for ch in chunks:
        for choice in ch.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                if tc.function and tc.function.name and not entry["name"]:
                    entry["name"] = tc.function.name
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    got = {
        "content": content,
        "tool_calls": [(v["name"], v["arguments"]) for _, v in sorted(calls.items())],
        "finish_reason": finish,
    }
    return got, chunks


@pytest.mark.parametrize("case", list(CASES))
def test_non_stream_direct_equals_non_stream_through_forced_stream(
    llama: LlamaServer, proxy: Mitmdump, case: str
) -> None:
    kw = {**BASE, **CASES[case]}
    direct = client(llama.url).chat.completions.create(**kw)
    shimmed = client(proxy.url("stream")).chat.completions.create(**kw)
    want = meaning(direct.choices[0].message, direct.choices[0].finish_reason)
    assert meaning(shimmed.choices[0].message, shimmed.choices[0].finish_reason) == want
    assert want["finish_reason"] == {"text": "stop", "length": "length", "tool": "tool_calls"}[case]
    if case == "tool":
        assert want["tool_calls"][0][0] == "get_weather"
    # the server ignores include_usage: the forced stream carries no usage, so the JSON client
    # gets an estimate; this server streams one token per chunk, so completion_tokens is exact
    # but for one token: one it generates without streaming (a stop sequence), or a tool call's
    # opening delta that carries the name but no token of its own
    assert direct.usage is not None and shimmed.usage is not None
    assert abs(shimmed.usage.completion_tokens - direct.usage.completion_tokens) <= 1


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A non-stream body without what differs per request (README: id, created, tool-call ids)
    and without usage (filled by streamshim when the stream carried none)."""
    out = {k: v for k, v in body.items() if k not in ("id", "created", "usage")}
    for choice in out["choices"]:
        for call in choice["message"].get("tool_calls") or []:
            call["id"] = "<id>"
    return out


@pytest.mark.parametrize("case", [*CASES, "empty"])
def test_non_stream_body_direct_equals_body_built_from_the_stream(
    llama: LlamaServer, proxy: Mitmdump, case: str
) -> None:
    """The BFCL use case, whole bodies: the same request non-stream, once direct and once through
    `upstream: stream`; equal apart from the fields the README lists."""
    kw = {**BASE, **CASES.get(case, {}), "user": f"bodies-{case}"}
    if case == "empty":
        # stop at the first character this server answers: an empty answer, finish_reason stop
        first = httpx.post(f"{llama.url}/v1/chat/completions", json=kw, timeout=60).json()
        kw["stop"] = [first["choices"][0]["message"]["content"][0]]
    direct = httpx.post(f"{llama.url}/v1/chat/completions", json=kw, timeout=60)
    shimmed = httpx.post(f"{proxy.url('stream')}/v1/chat/completions", json=kw, timeout=60)
    assert direct.status_code == shimmed.status_code == 200
    d, s = direct.json(), shimmed.json()
    assert _comparable(s) == _comparable(d)
    if case == "empty":
        assert d["choices"][0]["message"]["content"] == ""
    assert "x-streamshim-usage-filled" not in direct.headers
    assert shimmed.headers["x-streamshim-usage-filled"] == "estimate"
    assert abs(s["usage"]["completion_tokens"] - d["usage"]["completion_tokens"]) <= 1
    assert s["usage"]["total_tokens"] == s["usage"]["prompt_tokens"] + s["usage"]["completion_tokens"]
    flow = proxy.flow_with(f"bodies-{case}".encode())
    assert flow.marked == ":large_orange_diamond:" and "usage filled (estimate" in flow.comment
    assert "usage filled (estimate" in proxy.log()


def test_an_empty_answer_sent_back_as_history_is_accepted(llama: LlamaServer, proxy: Mitmdump) -> None:
    """BFCL's multi-turn loop sends the assistant message back; this server rejects
    ``content: null`` there (500), so an empty answer must come back as ``""`` as it does direct."""
    kw = {**BASE}
    first = client(llama.url).chat.completions.create(**kw).choices[0].message.content or ""
    kw["stop"] = [first[0]]
    c = client(proxy.url("stream"))
    answer = c.chat.completions.create(**kw).choices[0].message
    assert answer.content == ""
    history = [*kw["messages"], answer.model_dump(exclude_none=True), {"role": "user", "content": "And?"}]
    again = c.chat.completions.create(**{**kw, "messages": history})
    assert again.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("case", list(CASES))
def test_stream_direct_equals_synthesized_stream_through_forced_json(
    llama: LlamaServer, proxy: Mitmdump, case: str
) -> None:
    kw = {**BASE, **CASES[case]}
    direct, direct_chunks = streamed(client(llama.url), **kw)
    shimmed, shim_chunks = streamed(client(proxy.url("json")), **kw)
    assert shimmed == direct
    assert direct["content"] or direct["tool_calls"]
    if case == "tool":
        # llama-cpp-python repeats id and name in every delta; the synthesized stream names the
        # call once, in its first delta, with the first piece of the arguments
        repeated = [
            tc.function.name for ch in direct_chunks for c in ch.choices for tc in c.delta.tool_calls or []
        ]
        assert len(repeated) > 1 and set(repeated) == {"get_weather"}
        named = [
            tc.function.name
            for ch in shim_chunks
            for c in ch.choices
            for tc in c.delta.tool_calls or []
            if tc.function and tc.function.name
        ]
        assert named == ["get_weather"]


def test_sdk_stream_helper_gets_the_right_tool_name_only_through_streamshim(
    llama: LlamaServer, proxy: Mitmdump
) -> None:
    kw = {**BASE, **CASES["tool"]}
    with client(llama.url).chat.completions.stream(**kw) as s:
        direct = s.get_final_completion().choices[0].message.tool_calls[0].function.name
    with client(proxy.url("json")).chat.completions.stream(**kw) as s:
        shimmed = s.get_final_completion().choices[0].message.tool_calls[0].function.name
    assert direct.startswith("get_weatherget_weather")  # the SDK's quirk on this server, live
    assert shimmed == "get_weather"


def test_include_usage_honoured_through_forced_json(llama: LlamaServer, proxy: Mitmdump) -> None:
    kw = {**BASE, "stream_options": {"include_usage": True}}
    direct = list(client(llama.url).chat.completions.create(stream=True, **kw))
    shimmed = list(client(proxy.url("json")).chat.completions.create(stream=True, **kw))
    assert all(ch.usage is None for ch in direct)  # the server ignores include_usage
    assert shimmed[-1].choices == [] and shimmed[-1].usage is not None
    assert shimmed[-1].usage.completion_tokens > 0


def test_as_requested_passthrough_and_async_client(llama: LlamaServer, proxy: Mitmdump) -> None:
    kw = {**BASE, **CASES["text"]}

    async def run(url: str) -> tuple[str, str]:
        c = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-llama-test", max_retries=0, timeout=60)
        r = await c.chat.completions.create(**kw)
        s = await c.chat.completions.create(stream=True, **kw)
        text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
        await c.close()
        return r.choices[0].message.content or "", text

    direct = asyncio.run(run(llama.url))
    assert asyncio.run(run(proxy.url("asis"))) == direct
    assert asyncio.run(run(proxy.url("stream"))) == direct
    assert direct[0] == direct[1]


def test_check_and_diff_show_stream_equals_non_stream(llama: LlamaServer, tmp_path: Path) -> None:
    """The gist's trick as a tool: the same request once streamed and once not, captured through
    mitmdump; ``streamshim diff`` says they mean the same, ``streamshim check`` flags the server's
    repeated tool-call id/name as errors, and so did the proxy, in its log."""
    kw = {**BASE, **CASES["tool"]}
    rules = "rules:\n  - name: as-requested\n    upstream: as-requested\n"
    m = Mitmdump(tmp_path, {"asis": llama.url}, rules, "--set", "streamshim_check=on")
    m.start()
    try:
        c = client(m.url("asis"))
        list(c.chat.completions.create(stream=True, **kw))
        c.chat.completions.create(**kw)
    finally:
        m.stop()  # mitmdump's -w file is complete once it exits
    flows = m.flows()
    assert [f.request.json().get("stream") for f in flows] == [True, None]
    a, b = tmp_path / "stream.flow", tmp_path / "json.flow"
    write_flows(a, flows[:1])
    write_flows(b, flows[1:])

    diff = run_cli("diff", str(a), str(b))
    assert diff.returncode == 0, diff.stdout
    out = diff.stdout.decode().splitlines()
    assert out[0].startswith("same  A=") and out[0].endswith("(sse vs json)")
    assert out[-1] == "      status 200, 1 choice(s), finish_reason 'tool_calls', 0 chars, 1 tool call(s)"

    check = run_cli("check", str(a))
    text = check.stdout.decode()
    assert check.returncode == 1, text  # the repeated id/name: the openai SDK concatenates them
    # the JSON flow has no stream to check: said in one line, and the worse exit code (2) wins
    both = run_cli("check", str(a), str(b))
    assert both.returncode == 2 and both.stdout.decode() == text
    said = both.stderr.decode().strip()
    assert said.endswith(f"{b}: no SSE stream to check in its 2 response(s)"), said
    header = text.splitlines()[0]
    assert header.startswith(f"{a}#0 upstream: chat stream, ") and " errors, 0 warnings " in header
    assert "(tool-call-repeated-id ×" in header and ", tool-call-repeated-name ×" in header
    # the proxy ran the same check when the flow ended
    logged = [line for line in m.log().splitlines() if "check upstream:" in line]
    assert len(logged) == 1 and header.split(", ", 1)[1] in logged[0], logged


def test_repair_gives_the_sdk_helper_the_servers_tool_call_once(
    llama: LlamaServer, proxy: Mitmdump, tmp_path: Path
) -> None:
    """llama-cpp-python repeats the tool call's id, type and name (and the role) in every delta;
    through ``repair: true`` the openai SDK's own stream helper gets the name and the server's
    id once, and ``check`` finds nothing left on the client's side while the upstream's still
    shows what the server sent."""
    kw = {**BASE, **CASES["tool"], "user": "repair-tool"}
    with client(llama.url).chat.completions.stream(**kw) as s:
        direct = s.get_final_completion().choices[0].message.tool_calls[0]
    with client(proxy.url("repair")).chat.completions.stream(**kw) as s:
        fixed = s.get_final_completion().choices[0].message.tool_calls[0]
    assert direct.function.name.startswith("get_weatherget_weather")
    assert fixed.function.name == "get_weather"
    assert json.loads(fixed.function.arguments) == json.loads(direct.function.arguments)

    flow = proxy.flow_with(b"repair-tool")
    upstream = flow.metadata["streamshim"]["upstream_response"]
    deltas = [json.loads(e[6:])["choices"][0]["delta"] for e in upstream.split(b"\n\n") if e[6:7] == b"{"]
    server_id = next(d["tool_calls"][0]["id"] for d in deltas if d.get("tool_calls"))
    assert fixed.id == server_id and upstream.count(server_id.encode()) > 1  # sent in every delta
    path = tmp_path / "repair.flow"
    write_flows(path, [flow])
    out = run_cli("check", str(path)).stdout.decode()
    upstream, client_side = (line for line in out.splitlines() if " stream, " in line)
    assert "upstream: chat stream" in upstream and "tool-call-repeated-id" in upstream
    assert "client: chat stream" in client_side
    assert "0 errors" in client_side or "conforms" in client_side, client_side
    for code in ("role-repeated", "tool-call-repeated-id", "tool-call-repeated-name"):
        assert code not in client_side
