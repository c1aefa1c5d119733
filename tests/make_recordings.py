"""Regenerate ``recordings/`` from scratch with the project's own tooling.

    .venv/bin/python tests/make_recordings.py

Starts the real llama-cpp-python server on the tiny generated GGUF and the fault upstream, puts a
real mitmdump with the addon in front of them (``-w``, ``--set streamshim_scrub=true``), sends
every case through every direction with secrets in the headers, stops mitmdump, then writes one
scrubbed replay fixture per flow (``streamshim scrub --fixture``) as ``recordings/<case>.flow``.

The Responses API cases (``llama-server-responses-*``) come from llama.cpp's C++ ``llama-server``
(``tests/llama_cpp_server.py``; a second one with ``chatml_tools.jinja`` for the tool call); they
are left out, with a note, when it is not built. ``--only responses`` regenerates only those.
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


# the Responses API against llama-server: (case, request fields, the server: text or tool)
RESPONSES_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "text": ({"input": "Say hi", "max_output_tokens": 16}, "text"),
    "tool": (
        {
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "message", "role": "assistant", "content": "<tool_call>\n"},
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "enum": ["Paris"]}},
                    },
                }
            ],
            "tool_choice": "required",
            "max_output_tokens": 256,
        },
        "tool",
    ),
}


def send(url: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> None:
    try:
        with httpx.stream("POST", f"{url}{path}", json=body, headers=SECRETS, timeout=60) as r:
            r.read()
    except httpx.HTTPError as exc:  # the disconnect cases
        print(f"  ({body['user']}: {type(exc).__name__})")


def main() -> int:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    python = llama_python()
    if python is None and only != "responses":
        print("llama-cpp-python is needed: pip install -e '.[test,server]'", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers: list[Any] = []
        listeners: dict[str, str] = {}
        if only != "responses":
            llama = LlamaServer(work, python).start()  # type: ignore[arg-type]
            fault = FaultUpstream().start()
            servers += [llama, fault]
            listeners |= {f"llama_{d}": llama.url for d in DIRECTIONS} | {
                f"fault_{d}": fault.url for d in DIRECTIONS
            }
        cpp = _llama_cpp_servers(work)
        servers += cpp.values()
        for kind, server in cpp.items():
            listeners |= {f"cpp_{kind}_{d}": server.url for d in DIRECTIONS}
        rules = RULES if only != "responses" else "rules:\n"
        for kind in cpp:
            for d, rule in DIRECTIONS.items():
                shape, port = rule.removeprefix("upstream-"), f"{{cpp_{kind}_{d}}}"
                rules += f"  - name: {rule}-{kind}\n    listen_port: {port}\n    upstream: {shape}\n"
        proxy = Mitmdump(work, listeners, rules, "--set", "streamshim_scrub=true").start()
        names: list[str] = []
        try:
            if only != "responses":
                names += _chat_cases(proxy)
            for case, (extra, kind) in RESPONSES_CASES.items():
                if kind not in cpp:
                    continue
                for client_stream in (True, False):
                    for direction, rule in DIRECTIONS.items():
                        who = "stream-client" if client_stream else "json-client"
                        name = f"llama-server-responses-{case}__{who}__{rule}"
                        body = {
                            "model": "tiny",
                            "temperature": 0,
                            "stream": client_stream,
                            "user": name,
                            **extra,
                        }
                        send(proxy.url(f"cpp_{kind}_{direction}"), body, "/v1/responses")
                        names.append(name)
        finally:
            proxy.stop()
            if "-v" in sys.argv:
                print(proxy.log()[-3000:])
            for server in servers:
                server.stop()
        flows = list(read_flows(proxy.flows_path))
        RECORDINGS.mkdir(exist_ok=True)
        for old in RECORDINGS.glob("llama-server-responses-*.flow" if only == "responses" else "*.flow"):
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


def _chat_cases(proxy: Mitmdump) -> list[str]:
    names = []
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
        send(proxy.url(listener), {"model": model, "messages": [], "stream": client_stream, "user": name})
        names.append(name)
    return names


def _llama_cpp_servers(work: Path) -> dict[str, Any]:
    """llama.cpp's C++ llama-server, plain and with the tool-call template; {} when not built."""
    from llama_cpp_server import CHATML_TOOLS_TEMPLATE, LlamaCppServer, llama_server_binary

    binary = llama_server_binary()
    if binary is None:
        print("llama-server is not built (bash tests/build_llama_server.sh): no Responses recordings")
        return {}
    (work / "cpp-text").mkdir()
    (work / "cpp-tool").mkdir()
    text = LlamaCppServer(work / "cpp-text", binary).start()
    tool = LlamaCppServer(work / "cpp-tool", binary, chat_template_file=CHATML_TOOLS_TEMPLATE).start()
    return {"text": text, "tool": tool}


def _client_request(flow: Any) -> bytes:
    state = flow.metadata.get("streamshim") or {}
    return bytes(state.get("client_request") or flow.request.raw_content or b"")


def _write(path: Path, flows: list[Any]) -> None:
    from streamshim.mitm.recording import write_flows

    write_flows(path, flows)


if __name__ == "__main__":
    sys.exit(main())
