"""Regenerate ``recordings/`` from scratch with the project's own tooling.

    .venv/bin/python tests/make_recordings.py
    .venv/bin/python tests/make_recordings.py --only anthropic   # only the anthropic-* files

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
# Anthropic Messages against llama.cpp's C++ llama-server (tests/llama_cpp_server.py); the tool
# case uses chatml_tools.jinja and a pre-filled <tool_call> opener. The tag is metadata.user_id.
ANTHROPIC_CASES: dict[str, dict[str, Any]] = {
    "text": {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 32},
    "tool": {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "<tool_call>\n"},
        ],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]}},
                    "required": ["city"],
                },
            }
        ],
        "tool_choice": {"type": "any"},
        "max_tokens": 256,
    },
}
# (case name, listener, fault scenario, client streams?)
ANTHROPIC_FAULTS = [
    ("anthropic-fault-overloaded__json-client__upstream-stream", "fault_stream", "anth-overloaded", False),
    ("anthropic-fault-cut-tool__json-client__upstream-stream", "fault_stream", "anth-cut-tool", False),
    ("anthropic-fault-spliced__json-client__upstream-stream", "fault_stream", "anth-spliced", False),
    ("anthropic-fault-websearch__stream-client__upstream-json", "fault_json", "anth-json-websearch", True),
]


def send(url: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> None:
    try:
        with httpx.stream("POST", f"{url}{path}", json=body, headers=SECRETS, timeout=60) as r:
            r.read()
    except httpx.HTTPError as exc:  # the disconnect cases
        print(f"  ({body.get('user') or body.get('metadata')}: {type(exc).__name__})")


def anthropic_recordings(work: Path) -> list[Path]:
    """Capture the Anthropic cases through a mitmdump of their own; returns the raw flow files."""
    from llama_cpp_server import CHATML_TOOLS_TEMPLATE, LlamaCppServer, llama_server_binary

    binary = llama_server_binary()
    if binary is None:
        raise SystemExit("llama.cpp's llama-server is needed: bash tests/build_llama_server.sh")
    for sub in ("text", "tool", "mitm"):
        (work / sub).mkdir(parents=True)
    text = LlamaCppServer(work / "text", binary).start()
    tool = LlamaCppServer(work / "tool", binary, chat_template_file=CHATML_TOOLS_TEMPLATE).start()
    fault = FaultUpstream().start()
    servers = {"text": text, "tool": tool}
    listeners = {f"{s}_{d}": servers[s].url for s in servers for d in DIRECTIONS} | {
        f"fault_{d}": fault.url for d in DIRECTIONS
    }
    upstream = {"stream": "stream", "json": "json", "asis": "as-requested"}
    rules = "rules:\n" + "".join(
        f"  - name: {who}-{rule}\n    listen_port: {{{who}_{d}}}\n    upstream: {upstream[d]}\n"
        for who in (*servers, "fault")
        for d, rule in DIRECTIONS.items()
    )
    proxy = Mitmdump(work / "mitm", listeners, rules, "--set", "streamshim_scrub=true").start()
    names: list[str] = []
    try:
        for case, extra in ANTHROPIC_CASES.items():
            # once directly, so that llama-server's prompt cache answers every capture alike
            send(servers[case].url, {"model": "tiny", "temperature": 0, **extra}, "/v1/messages")
            for client_stream in (True, False):
                for direction, rule in DIRECTIONS.items():
                    who = "stream-client" if client_stream else "json-client"
                    name = f"anthropic-{case}__{who}__{rule}"
                    body = {"model": "tiny", "temperature": 0, "stream": client_stream, **extra}
                    body["metadata"] = {"user_id": name}
                    send(proxy.url(f"{case}_{direction}"), body, "/v1/messages")
                    names.append(name)
        for name, listener, model, client_stream in ANTHROPIC_FAULTS:
            body = {"model": model, "max_tokens": 64, "messages": [], "stream": client_stream}
            send(proxy.url(listener), {**body, "metadata": {"user_id": name}}, "/v1/messages")
            names.append(name)
    finally:
        proxy.stop()
        tool.stop()
        text.stop()
        fault.stop()
    return _split(work, list(read_flows(proxy.flows_path)), names, "user_id")


def _split(work: Path, flows: list[Any], names: list[str], key: str) -> list[Path]:
    """One raw flow file per case, found by its tag in the client's request."""
    out = []
    for name in names:
        matching = [
            f
            for f in flows
            if f'"{key}": "{name}"'.encode() in _client_request(f)
            or f'"{key}":"{name}"'.encode() in _client_request(f)
        ]
        if len(matching) != 1:
            raise SystemExit(f"{name}: {len(matching)} flows captured, expected 1")
        raw = work / f"{name}.raw.flow"
        _write(raw, matching)
        out.append(raw)
    return out


def _fixtures(raws: list[Path]) -> None:
    RECORDINGS.mkdir(exist_ok=True)
    for raw in raws:
        target = RECORDINGS / raw.name.replace(".raw.flow", ".flow")
        subprocess.run(
            [sys.executable, "-m", "streamshim.cli", "scrub", "--fixture", str(raw), str(target)], check=True
        )


def main() -> int:
    if sys.argv[1:] == ["--only", "anthropic"]:
        with tempfile.TemporaryDirectory() as tmp:
            raws = anthropic_recordings(Path(tmp))
            for old in RECORDINGS.glob("anthropic-*.flow"):
                old.unlink()
            _fixtures(raws)
        print(f"{len(raws)} recordings written to {RECORDINGS}")
        return 0
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
        raws = anthropic_recordings(work / "anthropic") if only is None else []
        _fixtures(raws)
    print(f"{len(names) + len(raws)} recordings written to {RECORDINGS}")
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
