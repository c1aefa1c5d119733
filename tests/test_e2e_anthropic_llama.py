"""End to end against a real Anthropic Messages server: llama.cpp's C++ ``llama-server`` on the tiny
GGUF (tests/llama_cpp_server.py), through a real mitmdump with the addon, driven by the real
anthropic SDK (sync and async; ``create``, ``create(stream=True)``, ``messages.stream()``).

At temperature 0 the server's stream and non-stream answers carry the same message, so what a
client gets through each rule must equal what a direct call of its own kind gets. Tool calls come
from ``chatml_tools.jinja`` with the assistant turn pre-filled with the template's ``<tool_call>``
opener (llama.cpp's grammar then forces the call); thinking from ``chatml_think.jinja``, whose
assistant turn opens a ``<think>`` block (llama.cpp sends its thinking with an empty signature).
Each prompt is sent once before it is compared:
llama-server's prompt cache moves tokens from ``input_tokens`` to ``cache_read_input_tokens`` on
the second identical prompt, and usage is compared exactly."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic_sdk import anthropic, without_sdk_fields
from llama_cpp_server import CHATML_TOOLS_TEMPLATE, LlamaCppServer, start_llama_cpp_server
from mitmproxy import io
from proxy import Mitmdump
from streamshim import aggregate
from streamshim.check import check_stream
from test_cli import run_text

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
SERVERS = ("text", "tool", "thinking")  # one llama-server each (thinking and tools: their templates)

RULES = (
    "rules:\n"
    + "".join(
        f"  - name: anthropic-{mode}-{server}\n    listen_port: {{{server}_{mode}}}\n    upstream: {mode}\n"
        for server in SERVERS
        for mode in ("stream", "json")
    )
    + "  - name: anthropic-as-requested\n    upstream: as-requested\n"
)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]}},
    "required": ["city"],
}
CASES: dict[str, dict[str, Any]] = {
    "text": {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 32},
    "max_tokens": {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2},
    "stop_sequence": {
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 32,
        "stop_sequences": ["!"],
    },
    "thinking": {
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 48,
        "thinking": {"type": "enabled", "budget_tokens": 32},
    },
    "tool": {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "<tool_call>\n"},
        ],
        "tools": [{"name": "get_weather", "description": "weather of a city", "input_schema": SCHEMA}],
        "tool_choice": {"type": "any"},
        "max_tokens": 256,
    },
}


TEMPLATES = {"tool": CHATML_TOOLS_TEMPLATE, "thinking": Path(__file__).with_name("chatml_think.jinja")}


def server_of(case: str) -> str:
    return case if case in SERVERS else "text"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LlamaCppServer]]:
    started: dict[str, LlamaCppServer] = {}
    try:
        for name in SERVERS:
            workdir = tmp_path_factory.mktemp(f"llama-server-{name}")
            started[name] = start_llama_cpp_server(workdir, chat_template_file=TEMPLATES.get(name))
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def proxy(servers: dict[str, LlamaCppServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    listeners = {f"{s}_{mode}": servers[s].url for s in SERVERS for mode in ("stream", "json", "asis")}
    m = Mitmdump(tmp_path_factory.mktemp("mitm-anthropic-llama"), listeners, RULES).start()
    yield m
    m.stop()


def sdk(url: str) -> Any:
    return anthropic.Anthropic(base_url=url, api_key="sk-ant-test", max_retries=0, timeout=120)


def request(case: str) -> dict[str, Any]:
    # the anthropic SDK 1.x and later have no temperature parameter: extra_body works on every version
    return {"model": "tiny", **CASES[case], "extra_body": {"temperature": 0}}


def direct(servers: dict[str, LlamaCppServer], case: str) -> Any:
    return sdk(servers[server_of(case)].url)


def via(proxy: Mitmdump, case: str, mode: str) -> Any:
    return sdk(proxy.url(f"{server_of(case)}_{mode}"))


def final(client: Any, case: str) -> dict[str, Any]:
    with client.messages.stream(**request(case)) as s:
        for _ in s:
            pass
        out: dict[str, Any] = s.get_final_message().to_dict()
    return out


def same_message(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Equal but for the ids of the message and its tool calls (each request gets its own)."""
    assert without_ids(a) == without_ids(b)


def without_ids(m: dict[str, Any]) -> dict[str, Any]:
    assert m["id"]
    blocks = [
        {k: v for k, v in b.items() if not (k == "id" and b["type"] == "tool_use")} for b in m["content"]
    ]
    return {**{k: v for k, v in m.items() if k != "id"}, "content": blocks}


@pytest.fixture(scope="module", autouse=True)
def warm(servers: dict[str, LlamaCppServer]) -> None:
    for case in CASES:
        direct(servers, case).messages.create(**request(case))


@pytest.mark.parametrize("case", list(CASES))
def test_json_client_behind_upstream_stream_gets_the_direct_json_answer(
    servers: dict[str, LlamaCppServer], proxy: Mitmdump, case: str
) -> None:
    want = direct(servers, case).messages.create(**request(case)).to_dict()
    got = via(proxy, case, "stream").messages.create(**request(case)).to_dict()
    same_message(got, want)
    if case == "tool":
        assert want["stop_reason"] == "tool_use" and want["content"][0]["name"] == "get_weather"
        assert want["content"][0]["input"]["city"] in SCHEMA["properties"]["city"]["enum"]  # type: ignore[index]
    # the raw bodies: the same keys as the server's own non-stream body
    import httpx

    body = {k: v for k, v in request(case).items() if k != "extra_body"} | {"temperature": 0, "stream": False}
    raw_direct = httpx.post(f"{servers[server_of(case)].url}/v1/messages", json=body, timeout=120).json()
    raw_via = httpx.post(
        f"{proxy.url(server_of(case) + '_stream')}/v1/messages", json=body, timeout=120
    ).json()
    assert raw_via.keys() == raw_direct.keys()
    same_message(raw_via, raw_direct)  # usage included


@pytest.mark.parametrize("case", list(CASES))
def test_stream_client_behind_upstream_json_gets_the_direct_stream_answer(
    servers: dict[str, LlamaCppServer], proxy: Mitmdump, case: str
) -> None:
    want = final(direct(servers, case), case)
    got = final(via(proxy, case, "json"), case)
    same_message(got, want)
    events = [e.type for e in via(proxy, case, "json").messages.create(**request(case), stream=True)]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]


@pytest.mark.parametrize("case", ["text", "tool"])
def test_passthrough_and_repairs(servers: dict[str, LlamaCppServer], proxy: Mitmdump, case: str) -> None:
    same_message(final(via(proxy, case, "asis"), case), final(direct(servers, case), case))
    want = direct(servers, case).messages.create(**request(case)).to_dict()
    same_message(via(proxy, case, "asis").messages.create(**request(case)).to_dict(), want)


def test_async_client(servers: dict[str, LlamaCppServer], proxy: Mitmdump) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        a = anthropic.AsyncAnthropic(
            base_url=proxy.url("tool_stream"), api_key="k", max_retries=0, timeout=120
        )
        b = anthropic.AsyncAnthropic(base_url=proxy.url("tool_json"), api_key="k", max_retries=0, timeout=120)
        plain = await a.messages.create(**request("tool"))
        async with b.messages.stream(**request("tool")) as s:
            streamed = await s.get_final_message()
        return plain.to_dict(), streamed.to_dict()

    plain, streamed = asyncio.run(run())
    same_message(plain, direct(servers, "tool").messages.create(**request("tool")).to_dict())
    same_message(streamed, final(direct(servers, "tool"), "tool"))


def test_llama_servers_own_streams_conform_and_aggregate_to_its_json(
    servers: dict[str, LlamaCppServer],
) -> None:
    import httpx

    for case in CASES:
        url = f"{servers[server_of(case)].url}/v1/messages"
        body = {k: v for k, v in request(case).items() if k != "extra_body"} | {"temperature": 0}
        stream = httpx.post(url, json={**body, "stream": True}, timeout=120).content
        plain = httpx.post(url, json={**body, "stream": False}, timeout=120).json()
        findings = [f.code for f in check_stream(stream, "anthropic").findings]
        # llama.cpp's thinking block ends with signature_delta "": a warning, the SDK takes it
        assert findings == (["thinking-no-signature"] if case == "thinking" else []), case
        out = aggregate(stream)
        same_message(without_sdk_fields(out, plain), plain)


def test_diff_of_the_two_flows_says_same(
    servers: dict[str, LlamaCppServer], proxy: Mitmdump, tmp_path: Path
) -> None:
    """A JSON client behind upstream: stream and a stream client behind upstream: json asked the
    same question: ``streamshim diff`` of the two flows (the server's answers, and what the clients
    got) says same; ``check`` finds both streams conform."""
    for case in ("text", "tool"):
        via(proxy, case, "stream").messages.create(**request(case), metadata={"user_id": f"diff-a-{case}"})
        final_kw = {**request(case), "metadata": {"user_id": f"diff-b-{case}"}}
        with via(proxy, case, "json").messages.stream(**final_kw) as s:
            s.get_final_message()
        files = []
        for tag in (f"diff-a-{case}", f"diff-b-{case}"):
            flow = proxy.flow_with(tag.encode(), timeout=30)
            path = tmp_path / f"{tag}.flow"
            with path.open("wb") as fh:
                io.FlowWriter(fh).add(flow)
            files.append(str(path))
        for side in ("upstream", "client"):
            out = cli("diff", *files, "--side", side)
            assert out.returncode == 0 and out.stdout.startswith("same"), out.stdout + out.stderr
        check = cli("check", *files)
        assert check.returncode == 0 and check.stdout.count("conforms") == 2, check.stdout
    # thinking: the same, and check warns of the empty signature in both streams (exit 0)
    via(proxy, "thinking", "stream").messages.create(
        **request("thinking"), metadata={"user_id": "diff-a-think"}
    )
    with via(proxy, "thinking", "json").messages.stream(
        **request("thinking"), metadata={"user_id": "diff-b-think"}
    ) as s:
        assert s.get_final_message().content[0].type == "thinking"
    files = []
    for tag in ("diff-a-think", "diff-b-think"):
        path = tmp_path / f"{tag}.flow"
        with path.open("wb") as fh:
            io.FlowWriter(fh).add(proxy.flow_with(tag.encode(), timeout=30))
        files.append(str(path))
    assert cli("diff", *files).stdout.startswith("same")
    check = cli("check", *files)
    assert check.returncode == 0 and check.stdout.count("1 warning (thinking-no-signature)") == 2, (
        check.stdout
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_text(*args, timeout=120)


def test_json_body_round_trips_through_the_proxy(servers: dict[str, LlamaCppServer], proxy: Mitmdump) -> None:
    """What the stream client got from the synthesized stream is exactly the server's JSON body."""
    import httpx

    body = {k: v for k, v in request("tool").items() if k != "extra_body"} | {"temperature": 0}
    plain = httpx.post(
        f"{servers['tool'].url}/v1/messages", json={**body, "stream": False}, timeout=120
    ).json()
    r = httpx.post(f"{proxy.url('tool_json')}/v1/messages", json={**body, "stream": True}, timeout=120)
    assert r.headers["content-type"].startswith("text/event-stream")
    out = aggregate(r.content)
    same_message(out, plain)
    assert json.loads(json.dumps(out)) == out
