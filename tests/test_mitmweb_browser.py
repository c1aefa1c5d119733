"""The "LLM stream" view in a real browser: headless Chromium on mitmweb's page of a flow.

mitmweb (with the addon, on 127.0.0.1, with a web password on mitmproxy 12) loads a recorded
llama-server tool-call stream (``--rfile``) and proxies one live streamed request to a local
upstream that sends a reasoning model's tool-call stream. For each flow, Chromium opens the
response tab (``#/flows/<id>/response``, the id from mitmweb's REST API) and the DOM must show the
view chosen automatically and the assembled message; a screenshot is taken too.
"""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM, DEMO_STREAM, HAS_WEB_AUTH, Chromium, DemoUpstream, Mitmweb
from proxy import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RECORDING = ROOT / "recordings" / "llama-tool__stream-client__as-requested.flow"
RECORDED_ID = "efbbc14d-0fbb-41fa-980e-da53bfb4a083"  # the flow's id in the recording


@pytest.fixture(scope="module")
def chromium() -> Chromium:
    if os.environ.get("STREAMSHIM_NO_CHROMIUM"):
        pytest.skip("STREAMSHIM_NO_CHROMIUM is set: the browser tests do not run")
    if not Chromium.available():
        pytest.skip(
            f"chromium is not installed ({CHROMIUM}): apt-get install -y chromium "
            "(tests/run.sh does this when apt-get is available)"
        )
    return Chromium()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmweb]:
    upstream = DemoUpstream().start()
    proc = Mitmweb(tmp_path_factory.mktemp("mitmweb"), upstream.url, rfile=RECORDING).start()
    yield proc
    proc.stop()
    upstream.stop()


def visible_text(dom: str) -> list[str]:
    """The DOM's text, one entry per text node, entities decoded (what the page shows)."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    return [html.unescape(t) for t in re.split(r"<[^>]*>", dom) if t.strip()]


def test_the_web_ui_needs_the_token_on_12(web: Mitmweb) -> None:
    r = httpx.get(f"{web.web}/flows", timeout=10, trust_env=False)
    assert r.status_code == (403 if HAS_WEB_AUTH else 200)


def test_live_flow_shows_the_assembled_message(web: Mitmweb, chromium: Chromium, tmp_path: Path) -> None:
    got, flow_id = web.send_demo_request()
    assert got == DEMO_STREAM  # the client got the upstream's bytes, streamed through
    url = web.flow_url(flow_id)
    started = time.monotonic()
    dom = chromium.dump_dom(url)
    took = time.monotonic() - started
    text = "\n".join(visible_text(dom))
    assert "LLM stream · chat · 15 events · finish_reason: tool_calls" in text, text[-3000:]
    for shown in (
        "The user wants a forecast for Paris. I will call get_weather in celsius.",
        "Let me look that up.",
        "get_weather",
        '"city": "Paris",',  # the arguments, arrived in 6 pieces, pretty-printed
        '"days": 3',
        "prompt_tokens 212 · completion_tokens 41 · total_tokens 253",
        "reasoning_tokens 19",
    ):
        assert shown in text, (shown, text[-3000:])
    assert re.search(r"^\s*\{\s*$", text, flags=re.M), "the arguments' opening brace on its own line"
    print(f"chromium --dump-dom: {took:.1f} s, {len(dom)} characters")
    shot = chromium.screenshot(url, tmp_path / "live.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_recorded_flow_shows_the_assembled_message(web: Mitmweb, chromium: Chromium) -> None:
    flow_id = web.flow_id("/v1/chat/completions", ("authorization", "[scrubbed]"))
    assert flow_id == RECORDED_ID
    text = "\n".join(visible_text(chromium.dump_dom(web.flow_url(flow_id))))
    assert "LLM stream · chat · 20 events · finish_reason: tool_calls" in text, text[-3000:]
    assert "[0] get_weather" in text
    assert '"city": "\'2w"' in text  # llama's {"city" :"'2w" }, re-indented


def test_without_the_token_the_page_shows_no_flow_on_12(web: Mitmweb, chromium: Chromium) -> None:
    if not HAS_WEB_AUTH:
        pytest.skip("mitmproxy 11.0 has no web UI authentication")
    url = web.flow_url(RECORDED_ID).replace(f"?token={web.token}", "")
    text = "\n".join(visible_text(chromium.dump_dom(url)))
    assert "LLM stream" not in text and "get_weather" not in text
