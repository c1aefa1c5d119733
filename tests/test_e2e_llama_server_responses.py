"""End to end, the Responses API against a real server: llama.cpp's C++ ``llama-server`` on the tiny
GGUF (``tests/llama_cpp_server.py``), through a real mitmdump with the addon, driven by the real
openai SDK. At temperature 0 with a fixed seed the server's stream and non-stream answers carry
the same output, so what a client gets through each rule must mean what the direct answer of the
shape it asked for means.

Tool calls are real here: a second server runs with ``tests/chatml_tools.jinja`` (a template
llama.cpp's parser recognises) and the assistant turn pre-filled with its ``<tool_call>`` opener.

What this server's Responses stream lacks, and what streamshim makes of it: no
``sequence_number``, ``output_index`` or ``content_index``, and ``response.created`` without an
``output`` list; the openai SDK's stream helper fails on it (2.x and 3.x), and reads the stream
streamshim synthesizes from the server's JSON answer (rule ``upstream: json``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_cpp_server import CHATML_TOOLS_TEMPLATE, LlamaCppServer, start_llama_cpp_server
from proxy import Mitmdump
from responses_sdk import MAJOR
from streamshim import aggregate
from streamshim.meaning import compare, meaning
from streamshim.mitm.recording import write_flows
from test_cli import run as run_cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RULES = """\
rules:
  - name: forced-stream
    listen_port: {stream}
    upstream: stream
  - name: forced-stream-tools
    listen_port: {tstream}
    upstream: stream
  - name: forced-json
    listen_port: {json}
    upstream: json
  - name: forced-json-tools
    listen_port: {tjson}
    upstream: json
  - name: repair
    listen_port: {repair}
    upstream: as-requested
    repair: true
  - name: repair-tools
    listen_port: {trepair}
    upstream: as-requested
    repair: true
  - name: as-requested
    upstream: as-requested
"""
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "London"]}}}
TOOL_INPUT = [
    {"role": "user", "content": "Weather in Paris?"},
    {"type": "message", "role": "assistant", "content": "<tool_call>\n"},  # the template's opener
]
CASES: dict[str, dict[str, Any]] = {
    "text": {"input": "Say hi", "max_output_tokens": 16},
    "length": {"input": "Say hi", "max_output_tokens": 2},
    "tool": {
        "input": TOOL_INPUT,
        "tools": [{"type": "function", "name": "get_weather", "parameters": SCHEMA}],
        "tool_choice": "required",
        "max_output_tokens": 256,
    },
}
BASE = {"model": "tiny", "temperature": 0}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LlamaCppServer]]:
    text = start_llama_cpp_server(tmp_path_factory.mktemp("llama-server"))
    try:
        tools = start_llama_cpp_server(
            tmp_path_factory.mktemp("llama-server-tools"), chat_template_file=CHATML_TOOLS_TEMPLATE
        )
    except BaseException:
        text.stop()
        raise
    yield {"text": text, "tool": tools}
    tools.stop()
    text.stop()


@pytest.fixture(scope="module")
def proxy(servers: dict[str, LlamaCppServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    text, tools = servers["text"].url, servers["tool"].url
    listeners = {
        "stream": text,
        "json": text,
        "repair": text,
        "asis": text,
        "tstream": tools,
        "tjson": tools,
        "trepair": tools,
        "tasis": tools,
    }
    m = Mitmdump(tmp_path_factory.mktemp("mitm-llama-server"), listeners, RULES).start()
    yield m
    m.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-llama-test", max_retries=0, timeout=120)


def server_for(servers: dict[str, LlamaCppServer], case: str) -> LlamaCppServer:
    return servers["tool" if case == "tool" else "text"]


def label(case: str, rule: str) -> str:
    return f"t{rule}" if case == "tool" else rule


def answer(resp: Any) -> dict[str, Any]:
    """What the tests compare: status, the text, the items (type, name, arguments) and usage."""
    d = resp if isinstance(resp, dict) else resp.to_dict()
    items = [(o["type"], o.get("name"), o.get("arguments")) for o in d["output"]]
    text = "".join(p.get("text", "") for o in d["output"] if o["type"] == "message" for p in o["content"])
    return {"status": d["status"], "text": text, "items": items, "usage": d["usage"]}


@pytest.mark.parametrize("case", list(CASES))
def test_json_client_behind_a_forced_stream_gets_the_direct_answer(
    servers: dict[str, LlamaCppServer], proxy: Mitmdump, case: str
) -> None:
    kw = {**BASE, **CASES[case]}
    server = server_for(servers, case)
    client(server.url).responses.create(**kw)  # warm the prompt cache: cached_tokens is then stable
    direct = client(server.url).responses.create(**kw)
    shimmed = client(proxy.url(label(case, "stream"))).responses.create(**kw)
    assert answer(shimmed) == answer(direct)
    assert direct.status == "completed" and direct.usage.output_tokens > 0
    if case == "tool":
        (call,) = direct.output
        assert call.type == "function_call" and call.name == "get_weather"
        assert json.loads(call.arguments)["city"] in ("Paris", "London")
    else:
        assert direct.output_text
    # the one field the server's stream does not carry: its JSON body has completed_at
    assert direct.completed_at is not None and shimmed.completed_at is None


@pytest.mark.parametrize("case", list(CASES))
def test_stream_client_behind_a_forced_json_gets_a_stream_the_sdk_helper_accepts(
    servers: dict[str, LlamaCppServer], proxy: Mitmdump, case: str
) -> None:
    kw = {**BASE, **CASES[case]}
    server = server_for(servers, case)
    direct_events = list(client(server.url).responses.create(stream=True, **kw))
    direct = direct_events[-1].response
    assert direct_events[-1].type == "response.completed"
    with client(proxy.url(label(case, "json"))).responses.stream(**kw) as s:
        events = list(s)
        shimmed = s.get_final_response()
    assert answer(shimmed) == answer(direct)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == shimmed.output_text
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == "".join(o.arguments for o in shimmed.output if o.type == "function_call")
    # and in meaning, the raw bodies: the server's own stream, the synthesized one
    raw = {"stream": True, **kw}
    own = httpx.post(f"{server.url}/v1/responses", json=raw, timeout=120)
    made = httpx.post(f"{proxy.url(label(case, 'json'))}/v1/responses", json=raw, timeout=120)
    stream_headers = [("content-type", "text/event-stream")]
    assert compare(meaning(200, stream_headers, own.content), meaning(200, stream_headers, made.content)) == (
        [],
        [],
    )


@pytest.mark.parametrize("case", ["text", "tool"])
def test_the_sdk_helper_fails_on_the_servers_own_stream(
    servers: dict[str, LlamaCppServer], case: str
) -> None:
    """Why a strict client wants the `upstream: json` rule in front of this server: openai 2.x
    fails on every one of its streams (no output list in response.created), 3.x on a text answer
    (no content_index); 3.x reads a lone function call (its item is found under output_index None)."""
    kw = {**BASE, **CASES[case]}
    helper = client(server_for(servers, case).url).responses.stream(**kw)
    if MAJOR >= 3 and case == "tool":
        with helper as s:
            assert s.get_final_response().output[0].name == "get_weather"
        return
    with pytest.raises((AttributeError, TypeError, RuntimeError)), helper as s:
        s.get_final_response()


@pytest.mark.parametrize("case", ["text", "tool"])
def test_repair_gives_the_sdk_helper_the_servers_own_stream_live(
    servers: dict[str, LlamaCppServer], proxy: Mitmdump, case: str
) -> None:
    """The other cure than ``upstream: json``: ``repair: true`` keeps the server's own stream,
    live, and gives each event the sequence_number, output_index, content_index and output list
    the stream itself tells; the SDK helper then reads it to the server's answer."""
    kw = {**BASE, **CASES[case]}
    server = server_for(servers, case)
    direct = list(client(server.url).responses.create(stream=True, **kw))[-1].response
    with client(proxy.url(label(case, "repair"))).responses.stream(**kw) as s:
        events = list(s)
        repaired = s.get_final_response()
    assert answer(repaired) == answer(direct)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert all(e.output_index is not None for e in events if hasattr(e, "output_index"))


def test_async_clients(servers: dict[str, LlamaCppServer], proxy: Mitmdump) -> None:
    kw = {**BASE, **CASES["text"]}

    async def run() -> tuple[Any, Any, Any]:
        def c(url: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk", max_retries=0, timeout=120)

        direct = await c(servers["text"].url).responses.create(**kw)
        plain = await c(proxy.url("stream")).responses.create(**kw)
        async with c(proxy.url("json")).responses.stream(**kw) as s:
            async for _ in s:
                pass
            streamed = await s.get_final_response()
        return direct, plain, streamed

    direct, plain, streamed = asyncio.run(run())
    assert direct.output_text == plain.output_text == streamed.output_text != ""


def test_own_stream_passes_live_check_names_what_it_lacks_and_diff_says_same(
    servers: dict[str, LlamaCppServer], tmp_path: Path
) -> None:
    kw = {**BASE, **CASES["tool"]}
    rules = "rules:\n  - name: as-requested\n    upstream: as-requested\n"
    m = Mitmdump(tmp_path, {"asis": servers["tool"].url}, rules, "--set", "streamshim_check=on")
    m.start()
    try:
        with httpx.stream(
            "POST", f"{m.url('asis')}/v1/responses", json={**kw, "stream": True}, timeout=120
        ) as r:
            pieces = list(r.iter_raw())
        c = client(m.url("asis"))
        c.responses.create(**kw)
    finally:
        m.stop()  # mitmdump's -w file is complete once it exits
    streamed = b"".join(pieces)
    assert aggregate(streamed)["output"][0]["name"] == "get_weather"
    flows = m.flows()
    assert [f.request.json().get("stream") for f in flows] == [True, None]
    assert flows[0].response is not None and flows[0].response.content == streamed  # as the server sent it
    assert "SSE passthrough" in flows[0].comment and "ended with response.completed" in flows[0].comment
    a, b = tmp_path / "stream.flow", tmp_path / "json.flow"
    write_flows(a, flows[:1])
    write_flows(b, flows[1:])

    check = run_cli("check", str(a))
    text = check.stdout.decode()
    assert check.returncode == 1, text
    header = text.splitlines()[0]
    assert header.startswith(f"{a}#0 upstream: responses stream, ")
    for code in ("sequence-missing", "output-index-missing", "created-no-output"):
        assert code in header, header
    logged = [line for line in m.log().splitlines() if "check upstream:" in line]
    assert len(logged) == 1 and "sequence-missing" in logged[0]

    diff = run_cli("diff", str(a), str(b))
    out = diff.stdout.decode().splitlines()
    assert diff.returncode == 0, out
    assert out[0].startswith("same  A=") and out[0].endswith("(sse vs json)")
    assert out[-1] == "      status 200, 1 output(s), status 'completed', 0 chars, 1 tool call(s)"
