"""mitmweb with the addon, seen through a real headless Chromium: shared by
``test_mitmweb_browser.py`` and ``screenshot_mitmweb.py``.

``Mitmweb`` starts ``mitmweb -s addons/streamshim.py`` on 127.0.0.1 (free ports, no browser, on
mitmproxy 12 with a web password, used as the ``?token=``), in reverse mode in front of
``DemoUpstream``, a tiny local server that answers every POST with ``DEMO_STREAM`` (a reasoning
model's tool-call stream). ``send_demo_request`` sends one streamed chat request through it, so the
flow mitmweb shows was produced live through the addon. ``Chromium`` runs Debian's
``/usr/bin/chromium`` headless on a URL: ``dump_dom`` returns the DOM after the page's scripts
ran, ``screenshot`` writes a PNG.
"""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from helpers import chunk, delta, sse
from mitmproxy import version
from proxy import ADDON, READY, ROOT, LoggedProcess, ServerThread, free_ports

MITMWEB = Path(sys.executable).with_name("mitmweb")
CHROMIUM = Path(os.environ.get("STREAMSHIM_CHROMIUM", "/usr/bin/chromium"))
MITMPROXY_MAJOR = int(version.VERSION.split(".")[0])
HAS_WEB_AUTH = MITMPROXY_MAJOR >= 12  # mitmproxy 11.0 has no web UI authentication at all
SCREENSHOT = ROOT / "docs" / "mitmweb-llm-stream.png"
WINDOW = (1280, 800)

DEMO_HEADER = "x-demo-run"  # tells the demo flow apart from flows loaded with --rfile
DEMO_ARGS = '{"city": "Paris", "unit": "celsius", "days": 3}'
DEMO_STREAM = sse(
    chunk(delta(role="assistant", content=""), id="chatcmpl-demo", model="qwen3-8b"),
    *[
        chunk(delta(reasoning_content=piece), id="chatcmpl-demo", model="qwen3-8b")
        for piece in ("The user wants a forecast for Paris. ", "I will call get_weather ", "in celsius.")
    ],
    chunk(delta(content="Let me look that up."), id="chatcmpl-demo", model="qwen3-8b"),
    chunk(
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "call_7f3a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        ),
        id="chatcmpl-demo",
        model="qwen3-8b",
    ),
    *[
        chunk(
            delta(tool_calls=[{"index": 0, "function": {"arguments": DEMO_ARGS[i : i + 9]}}]),
            id="chatcmpl-demo",
            model="qwen3-8b",
        )
        for i in range(0, len(DEMO_ARGS), 9)
    ],
    chunk(delta(finish_reason="tool_calls"), id="chatcmpl-demo", model="qwen3-8b"),
    chunk(
        usage={
            "prompt_tokens": 212,
            "completion_tokens": 41,
            "total_tokens": 253,
            "completion_tokens_details": {"reasoning_tokens": 19},
        },
        id="chatcmpl-demo",
        model="qwen3-8b",
    ),
)
DEMO_REQUEST: dict[str, Any] = {
    "model": "qwen3-8b",
    "stream": True,
    "messages": [{"role": "user", "content": "Weather in Paris for the next 3 days?"}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
}


class DemoUpstream(ServerThread):
    """An OpenAI-compatible server in a thread that streams ``DEMO_STREAM`` for every POST."""

    def __init__(self) -> None:
        body = DEMO_STREAM

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler), "demo-upstream")


class Mitmweb(LoggedProcess):
    """``mitmweb -s addons/streamshim.py`` on 127.0.0.1: the proxy (reverse mode in front of
    ``upstream``) and the web UI on free ports; ``rfile``: flows to load at startup."""

    name = "mitmweb"

    def __init__(self, workdir: Path, upstream: str, rfile: Path | None = None) -> None:
        super().__init__(workdir)
        self.proxy_port, self.web_port = free_ports(2)
        self.ready_path = workdir / "mitmweb.ready"
        self.token = secrets.token_hex(16) if HAS_WEB_AUTH else ""
        self.args = [
            str(MITMWEB),
            "-s",
            str(ADDON),
            "--listen-host",
            "127.0.0.1",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(self.web_port),
            "--no-web-open-browser",
            "--mode",
            f"reverse:{upstream}@{self.proxy_port}",
            "--set",
            "connection_strategy=lazy",
            "-s",
            str(READY),
            "--set",
            f"ready_file={self.ready_path}",
        ]
        if self.token:
            self.args += ["--set", f"web_password={self.token}"]
        if rfile is not None:
            self.args += ["--rfile", str(rfile)]

    def start(self) -> Mitmweb:
        self.ready_path.unlink(missing_ok=True)
        self.launch(self.args, (self.proxy_port, self.web_port), self.ready_path)
        return self

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def api(self, path: str) -> Any:
        """GET a mitmweb REST endpoint (with the token on 12) and decode its JSON."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        r = httpx.get(f"{self.web}{path}", headers=headers, timeout=10, trust_env=False)
        r.raise_for_status()
        return r.json()

    def flow_id(self, path: str, header: tuple[str, str] | None = None, timeout: float = 15.0) -> str:
        """The id of a completed flow for request ``path`` (with that request header, if given),
        from the REST API's flow list."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in self.api("/flows"):
                req, resp = f.get("request") or {}, f.get("response")
                headers = {(k.lower(), v) for k, v in req.get("headers", [])}
                if req.get("path") == path and resp and (header is None or header in headers):
                    return str(f["id"])
            time.sleep(0.1)
        raise AssertionError(f"no completed flow for {path} in mitmweb:\n{self.log()}")

    def flow_url(self, flow_id: str, tab: str = "response") -> str:
        """The web UI's page of one flow (hash routing), with the token on 12."""
        query = f"?token={self.token}" if self.token else ""
        return f"{self.web}/{query}#/flows/{flow_id}/{tab}"

    def send_demo_request(self) -> tuple[bytes, str]:
        """One streamed chat request through the proxy; returns the body the client got and the
        flow's id."""
        run = secrets.token_hex(8)
        r = httpx.post(
            f"http://127.0.0.1:{self.proxy_port}/v1/chat/completions",
            json=DEMO_REQUEST,
            headers={DEMO_HEADER: run},
            timeout=30,
            trust_env=False,
        )
        r.raise_for_status()
        return r.content, self.flow_id("/v1/chat/completions", (DEMO_HEADER, run))


class Chromium:
    """Debian's chromium, headless, with a throwaway profile and no background traffic."""

    def __init__(self, binary: Path = CHROMIUM) -> None:
        self.binary = binary

    @staticmethod
    def available(binary: Path = CHROMIUM) -> bool:
        return binary.is_file() and os.access(binary, os.X_OK)

    def _run(self, url: str, *extra: str, budget_ms: int = 8000, timeout: float = 90.0) -> str:
        profile = tempfile.mkdtemp(prefix="streamshim-chromium-")
        args = [
            str(self.binary),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            url,
        ]
        try:
            proc = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"chromium exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')[-3000:]}"
            )
        return proc.stdout.decode("utf-8", errors="replace")

    def dump_dom(self, url: str) -> str:
        return self._run(url, "--dump-dom")

    def screenshot(self, url: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._run(url, f"--screenshot={path}")
        if not path.is_file():
            raise RuntimeError(f"chromium wrote no screenshot to {path}")
        return path


def demo_flow_url(workdir: Path, rfile: Path | None = None) -> tuple[DemoUpstream, Mitmweb, str]:
    """Upstream and mitmweb started, the demo request sent; returns them (stop both when done) and
    the URL of the demo flow's response tab."""
    upstream = DemoUpstream().start()
    try:
        web = Mitmweb(workdir, upstream.url, rfile).start()
    except BaseException:
        upstream.stop()
        raise
    try:
        got, flow_id = web.send_demo_request()
        assert got == DEMO_STREAM, got[:200]
        url = web.flow_url(flow_id)
    except BaseException:
        web.stop()
        upstream.stop()
        raise
    return upstream, web, url
