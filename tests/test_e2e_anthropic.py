"""End to end, Anthropic Messages: a real mitmdump with the addon in front of the fault upstream's
``anth-…`` scenarios (tests/anthropic_streams.py), driven by the real anthropic SDK (sync and
async, ``create``, ``create(stream=True)``, ``messages.stream()``) and by raw HTTP where bytes and
headers matter."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import anthropic_streams as A
import httpx
import pytest
from anthropic_sdk import MAJOR, anthropic, without_sdk_fields
from fault_upstream import FaultUpstream
from mitmproxy import io
from proxy import Mitmdump
from streamshim import aggregate
from streamshim.framing.sse import SSEDecoder
from test_cli import run_text as cli

pytestmark = pytest.mark.e2e
USER = [{"role": "user", "content": "hi"}]


def client(shim: Mitmdump, label: str, **kw: Any) -> Any:
    return anthropic.Anthropic(
        api_key="test", base_url=shim.url(label), max_retries=kw.pop("max_retries", 0), **kw
    )


def post(shim: Mitmdump, label: str, model: str, stream: bool, tag: str = "hi") -> httpx.Response:
    """A raw request; ``tag`` is the user's message, to find the flow again (``flow_with``)."""
    body = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": tag}],
        "stream": stream,
    }
    return httpx.post(f"{shim.url(label)}/v1/messages", json=body, timeout=30)


def names(body: bytes) -> list[str]:
    dec = SSEDecoder()
    return [e.event for e in dec.feed(body) + dec.close()]


SHAPES = list(A.MESSAGES)


# -- the four directions, with the SDK ------------------------------------------------------------


@pytest.mark.parametrize("name", [*SHAPES, "padded-websearch"])
def test_json_client_of_a_forced_stream_gets_the_message(
    shim: Mitmdump, fault: FaultUpstream, name: str
) -> None:
    message = client(shim, "stream").messages.create(model=f"anth-{name}", max_tokens=64, messages=USER)
    want = A.MESSAGES[name.removeprefix("padded-")]
    assert without_sdk_fields(message.to_dict(), want) == want
    assert fault.last().json()["stream"] is True and fault.last().path == "/v1/messages"


@pytest.mark.parametrize("name", SHAPES)
def test_stream_client_of_a_forced_json_upstream_gets_anthropics_stream(
    shim: Mitmdump, fault: FaultUpstream, name: str
) -> None:
    sdk = client(shim, "json")
    with sdk.messages.stream(model=f"anth-json-{name}", max_tokens=64, messages=USER) as s:
        texts = "".join(s.text_stream)
        final = s.get_final_message().to_dict()
    want = A.MESSAGES[name]
    assert without_sdk_fields(final, want) == want
    assert texts == "".join(b.get("text", "") for b in want["content"])
    assert fault.last().json()["stream"] is False
    events = [
        e.type
        for e in sdk.messages.create(model=f"anth-json-{name}", max_tokens=64, messages=USER, stream=True)
    ]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]


def test_synthesized_stream_on_the_wire(shim: Mitmdump) -> None:
    r = post(shim, "json", "anth-json-thinking", stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in r.headers
    assert names(r.content)[:2] == ["message_start", "content_block_start"]
    assert b'"thinking":"The "' in r.content  # the rule's chunk_chars: 4
    assert aggregate(r.content) == A.MESSAGES["thinking"]


def test_live_passthrough_is_byte_exact(shim: Mitmdump) -> None:
    r = post(shim, "asis", "anth-padded-websearch", stream=True, tag="passthrough-exact")
    assert r.status_code == 200 and r.content == A.padded(A.stream("websearch"))
    flow = shim.flow_with(b"passthrough-exact")
    assert flow.comment.endswith("ended with message_stop"), flow.comment
    assert flow.marked == ":default:"


def test_json_answer_to_a_stream_request_and_stream_to_a_json_request_are_repaired(shim: Mitmdump) -> None:
    assert aggregate(post(shim, "asis", "anth-json-tool", stream=True).content) == A.MESSAGES["tool"]
    r = post(shim, "asis", "anth-tool", stream=False)
    assert r.headers["content-type"] == "application/json" and r.json() == A.MESSAGES["tool"]


def test_async_client(shim: Mitmdump) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        sdk = anthropic.AsyncAnthropic(api_key="test", base_url=shim.url("stream"), max_retries=0)
        plain = await sdk.messages.create(model="anth-thinking", max_tokens=64, messages=USER)
        streaming = anthropic.AsyncAnthropic(api_key="test", base_url=shim.url("json"), max_retries=0)
        async with streaming.messages.stream(model="anth-json-websearch", max_tokens=64, messages=USER) as s:
            final = await s.get_final_message()
        return plain.to_dict(), final.to_dict()

    plain, final = asyncio.run(run())
    assert without_sdk_fields(plain, A.MESSAGES["thinking"]) == A.MESSAGES["thinking"]
    assert without_sdk_fields(final, A.MESSAGES["websearch"]) == A.MESSAGES["websearch"]


def test_keepalive_sends_spaces_then_the_message(shim: Mitmdump) -> None:
    r = post(shim, "keepalive", "anth-websearch", stream=False)
    assert r.status_code == 200 and r.content.startswith(b" ")
    assert json.loads(r.content) == A.MESSAGES["websearch"]


# -- faults: never a 200 for a JSON client ------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "kind", "words"),
    [
        ("cut", 502, "api_error", "without message_stop"),
        ("cut-tool", 502, "api_error", "cut inside a tool's input JSON"),
        ("overloaded", 529, "overloaded_error", "Overloaded (overloaded_error)"),
        ("spliced", 502, "api_error", "two generations spliced"),
        ("spliced-after-stop", 502, "api_error", "after message_stop"),
    ],
)
def test_broken_streams_reach_a_json_client_as_an_anthropic_error(
    shim: Mitmdump, scenario: str, status: int, kind: str, words: str
) -> None:
    r = post(shim, "stream", f"anth-{scenario}", stream=False)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["error"]["message"].startswith("streamshim: upstream stream failed at ")
    assert words in body["error"]["message"], body["error"]["message"]
    assert isinstance(body["error"]["partial_response"], dict)
    # the SDK raises, with the message
    sdk_error = anthropic.OverloadedError if status == 529 else anthropic.InternalServerError
    with pytest.raises(sdk_error) as info:
        client(shim, "stream").messages.create(model=f"anth-{scenario}", max_tokens=64, messages=USER)
    assert words in str(info.value)


@pytest.mark.parametrize(("scenario", "status"), [("overloaded", 529), ("cut", 502)])
def test_the_sdk_retries_both_statuses(
    shim: Mitmdump, fault: FaultUpstream, scenario: str, status: int
) -> None:
    """The anthropic SDK retries every status >= 500 (max_retries, default 2); 529 makes it
    raise OverloadedError, as Anthropic's own overloaded answer does."""
    before = len(fault.received)
    with pytest.raises(anthropic.APIStatusError) as info:
        client(shim, "stream", max_retries=1).messages.create(
            model=f"anth-{scenario}", max_tokens=64, messages=USER
        )
    assert info.value.status_code == status
    assert len(fault.received) - before == 2


@pytest.mark.parametrize("scenario", ["cut", "cut-tool", "overloaded"])
def test_a_stream_client_gets_the_broken_stream_as_it_came_and_the_flow_says_so(
    shim: Mitmdump, scenario: str
) -> None:
    r = post(shim, "asis", f"anth-{scenario}", stream=True, tag=f"broken-{scenario}")
    assert r.status_code == 200
    assert r.content == A.FAULTS[scenario]()
    flow = shim.flow_with(f"broken-{scenario}".encode())
    assert flow.marked == ":warning:", flow.comment
    assert "ended with message_stop" not in flow.comment


def test_a_spliced_stream_passes_the_live_watch_but_not_the_in_proxy_check(
    fault: FaultUpstream, tmp_path: Path
) -> None:
    """The live watch sees bytes, not structure: two generations glued together end with a
    message_stop like any whole stream. The conformance check (on in mitmweb, ``streamshim_check=on``
    in mitmdump, ``streamshim check`` on saved flows) finds the second message_start."""
    rules = "rules:\n  - name: asis\n    upstream: as-requested\n"
    proxy = Mitmdump(tmp_path, {"asis": fault.url}, rules, "--set", "streamshim_check=on").start()
    try:
        r = post(proxy, "asis", "anth-spliced", stream=True, tag="spliced-checked")
        assert r.content == A.spliced()
        deadline = time.monotonic() + 20
        while "message-start-repeated" not in proxy.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        line = next(ln for ln in proxy.log().splitlines() if "check upstream" in ln)
        assert "message-start-repeated" in line and "ended with message_stop" not in line, line
    finally:
        proxy.stop()
    flow = flow_file(proxy, b"spliced-checked", tmp_path / "spliced.flow")
    out = cli("check", str(flow))
    assert out.returncode == 1 and "message-start-repeated" in out.stdout


def test_the_sdk_stream_helper_raises_on_an_error_event(shim: Mitmdump) -> None:
    with (
        pytest.raises(anthropic.APIStatusError),
        client(shim, "asis").messages.stream(model="anth-overloaded", max_tokens=64, messages=USER) as s,
    ):
        s.get_final_message()


# -- flows: check and diff on the flow file -------------------------------------------------------


def flow_file(shim: Mitmdump, marker: bytes, path: Path) -> Path:
    flow = shim.flow_with(marker)
    with path.open("wb") as fh:
        io.FlowWriter(fh).add(flow)
    return path


def test_check_and_diff_on_flow_files(shim: Mitmdump, tmp_path: Path) -> None:
    post(shim, "stream", "anth-thinking", stream=False, tag="flow-a")  # upstream stream, client JSON
    post(shim, "json", "anth-json-thinking", stream=True, tag="flow-b")  # upstream JSON, client stream
    a = flow_file(shim, b"flow-a", tmp_path / "a.flow")
    b = flow_file(shim, b"flow-b", tmp_path / "b.flow")
    check = cli("check", str(a), str(b))
    # both streams carry a thinking block whose signature is fine: they conform
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("anthropic stream") == 2 and "conforms" in check.stdout
    for side in ("upstream", "client"):
        diff = cli("diff", str(a), str(b), "--side", side)
        assert diff.returncode == 0 and diff.stdout.startswith("same"), diff.stdout
    post(shim, "asis", "anth-cut-tool", stream=True, tag="flow-c")
    cut = flow_file(shim, b"flow-c", tmp_path / "c.flow")
    bad = cli("check", str(cut))
    assert bad.returncode == 1 and "no-message-stop" in bad.stdout


def test_sdk_versions() -> None:
    """The line under test: anthropic 0.x beside mitmproxy 11 (httpx), any beside mitmproxy 12."""
    from mitmproxy.version import VERSION

    assert MAJOR < 1 or not VERSION.startswith("11.")


def test_repair_ends_a_quietly_cut_stream_with_an_error_the_sdk_raises(shim: Mitmdump) -> None:
    """The anthropic SDK takes a stream that stops before message_stop, or inside a tool's input
    JSON, as a complete message; through ``repair: true`` it gets an error event and raises,
    while a stream whose message_delta said its stop_reason gets its message_stop."""
    kw = {"max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    with client(shim, "asis").messages.stream(model="anth-cut-tool", **kw) as s:
        healed = s.get_final_message()
    assert healed.stop_reason is None or healed.content  # a "complete" message, as the SDK sees it
    with (
        pytest.raises(anthropic.APIStatusError),
        client(shim, "repair").messages.stream(model="anth-cut-tool", **kw) as s,
    ):
        s.get_final_message()
    with client(shim, "repair").messages.stream(model="anth-cut", **kw) as s:
        ended = s.get_final_message()
    assert ended.stop_reason == "end_turn"
