"""Regenerate ``recordings/`` from scratch with the project's own tooling.

    .venv/bin/python tests/make_recordings.py

Starts the real llama-cpp-python server on the tiny generated GGUF and the fault upstream, puts a
real mitmdump with the addon in front of them (``-w``, ``--set streamshim_scrub=true``), sends
every case through every direction with secrets in the headers, stops mitmdump, then writes one
scrubbed replay fixture per flow (``streamshim scrub --fixture``) as ``recordings/<case>.flow``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from fault_upstream import FaultUpstream
from llama import LlamaServer, llama_python
from proxy import ROOT, Mitmdump, read_flows

RECORDINGS = ROOT / "recordings"
SECRETS = {
    "authorization": "Bearer sk-streamshim-recording-secret-0123456789",
    "api-key": "azure-secret-key-0123456789",
    "x-api-key": "sk-ant-streamshim-secret-0123456789",
    "cookie": "session=secret-cookie-0123456789",
}
RULES = """\
rules:
  - name: upstream-stream
    listen_port: {llama_stream}
    upstream: stream
  - name: upstream-json
    listen_port: {llama_json}
    upstream: json
  - name: as-requested
    listen_port: {llama_asis}
    upstream: as-requested
  - name: fault-upstream-stream
    listen_port: {fault_stream}
    upstream: stream
  - name: fault-upstream-json
    listen_port: {fault_json}
    upstream: json
  - name: fault-as-requested
    listen_port: {fault_asis}
    upstream: as-requested
"""
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
LLAMA_CASES: dict[str, dict[str, Any]] = {
    "text": {},
    "tool": {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    "length": {"max_tokens": 2},
}
DIRECTIONS = {"stream": "upstream-stream", "json": "upstream-json", "asis": "as-requested"}
# (case name, listener, model scenario, client streams?)
FAULT_CASES = [
    ("fault-disconnect__stream-client__as-requested", "fault_asis", "disconnect:3", True),
    ("fault-disconnect__json-client__upstream-stream", "fault_stream", "disconnect:3", False),
    ("fault-error-event__json-client__upstream-stream", "fault_stream", "error-event", False),
    ("fault-error-event__stream-client__as-requested", "fault_asis", "error-event", True),
    ("fault-gzip__json-client__upstream-stream", "fault_stream", "sse-gzip", False),
    ("fault-gzip__stream-client__as-requested", "fault_asis", "sse-gzip", True),
    ("fault-gzip-json__stream-client__upstream-json", "fault_json", "json-gzip", True),
]


def send(url: str, body: dict[str, Any]) -> None:
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=SECRETS, timeout=60) as r:
            r.read()
    except httpx.HTTPError as exc:  # the disconnect cases
        print(f"  ({body['user']}: {type(exc).__name__})")


def main() -> int:
    python = llama_python()
    if python is None:
        print("llama-cpp-python is needed: pip install -e '.[test,server]'", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        llama = LlamaServer(work, python).start()
        fault = FaultUpstream().start()
        listeners = {f"llama_{d}": llama.url for d in DIRECTIONS} | {
            f"fault_{d}": fault.url for d in DIRECTIONS
        }
        proxy = Mitmdump(work, listeners, RULES, "--set", "streamshim_scrub=true").start()
        names: list[str] = []
        try:
            for case, extra in LLAMA_CASES.items():
                for client_stream in (True, False):
                    for direction, rule in DIRECTIONS.items():
                        who = "stream-client" if client_stream else "json-client"
                        name = f"llama-{case}__{who}__{rule}"
                        body = {
                            "model": "tiny",
                            "messages": [{"role": "user", "content": "Weather in Paris?"}],
                            "temperature": 0,
                            "max_tokens": 16,
                            "stream": client_stream,
                            "user": name,
                            **extra,
                        }
                        send(proxy.url(f"llama_{direction}"), body)
                        names.append(name)
            for name, listener, model, client_stream in FAULT_CASES:
                send(
                    proxy.url(listener),
                    {"model": model, "messages": [], "stream": client_stream, "user": name},
                )
                names.append(name)
        finally:
            proxy.stop()
            llama.stop()
            fault.stop()
        flows = list(read_flows(proxy.flows_path))
        RECORDINGS.mkdir(exist_ok=True)
        for old in RECORDINGS.glob("*.flow"):
            old.unlink()
        for name in names:
            matching = [
                f
                for f in flows
                if f'"user": "{name}"'.encode() in _client_request(f)
                or f'"user":"{name}"'.encode() in _client_request(f)
            ]
            if len(matching) != 1:
                print(f"{name}: {len(matching)} flows captured, expected 1", file=sys.stderr)
                return 1
            raw = work / f"{name}.raw.flow"
            _write(raw, matching)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "streamshim.cli",
                    "scrub",
                    "--fixture",
                    str(raw),
                    str(RECORDINGS / f"{name}.flow"),
                ],
                check=True,
            )
    print(f"{len(names)} recordings written to {RECORDINGS}")
    return 0


def _client_request(flow: Any) -> bytes:
    state = flow.metadata.get("streamshim") or {}
    return bytes(state.get("client_request") or flow.request.raw_content or b"")


def _write(path: Path, flows: list[Any]) -> None:
    from streamshim.mitm.recording import write_flows

    write_flows(path, flows)


if __name__ == "__main__":
    sys.exit(main())
