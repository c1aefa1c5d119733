"""The command line, run as a real subprocess the way users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import chunk, delta, sse
from streamshim import aggregate

BODY = sse(
    chunk(delta(role="assistant", content="Hi"), usage=None),
    chunk(
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "c",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                }
            ],
            finish_reason="tool_calls",
        )
    ),
    chunk(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
)


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streamshim.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_aggregate_from_file_and_stdin(tmp_path: Path) -> None:
    f = tmp_path / "s.sse"
    f.write_bytes(BODY)
    for proc in (run("aggregate", str(f)), run("aggregate", stdin=BODY)):
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["choices"][0]["message"]["tool_calls"][0]["function"] == {
            "name": "f",
            "arguments": '{"a": 1}',
        }
        assert out["usage"]["total_tokens"] == 3
        assert proc.stderr == b""


def test_synthesize_options_and_detection(tmp_path: Path) -> None:
    resp = aggregate(BODY)
    f = tmp_path / "r.json"
    f.write_text(json.dumps(resp))
    plain = run("synthesize", str(f), "--chunk-chars", "1")
    assert plain.returncode == 0
    assert b'"usage"' not in plain.stdout and plain.stdout.endswith(b"data: [DONE]\n\n")
    assert b'"content":"H"' in plain.stdout  # one character per piece
    with_usage = run("synthesize", "--include-usage", stdin=json.dumps(resp).encode())
    assert aggregate(with_usage.stdout) == resp
    legacy = {
        "id": "x",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"text": "abc", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    }
    out = run("synthesize", stdin=json.dumps(legacy).encode())
    assert b'"object":"text_completion"' in out.stdout and aggregate(out.stdout) == legacy


def test_errors_name_what_and_where() -> None:
    cut = BODY[: BODY.index(b"data: {", 10)] + b'data: {"id": "c1", "choi'
    proc = run("aggregate", stdin=cut)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith("streamshim: <stdin>: truncated at event 2 (byte ")
    assert "middle of an event" in err and "--partial" in err
    assert proc.stdout == b""
    partial = run("aggregate", "--partial", stdin=cut)
    assert partial.returncode == 1
    assert json.loads(partial.stdout)["choices"][0]["message"]["content"] == "Hi"

    errored = run("aggregate", stdin=sse(chunk(delta(content="x")), {"error": {"message": "rate limited"}}))
    assert errored.returncode == 1 and b"upstream_error at event 2" in errored.stderr
    assert b"rate limited" in errored.stderr

    bad = run("synthesize", stdin=b"{not json")
    assert bad.returncode == 1 and bad.stderr.startswith(b"streamshim: <stdin>: not a JSON body")
    missing = run("aggregate", "/nonexistent/file.sse")
    assert missing.returncode == 1 and b"/nonexistent/file.sse: cannot read" in missing.stderr
    assert run("synthesize", "--chunk-chars", "0", stdin=b"{}").returncode == 2


def test_warning_for_missing_final_blank_line() -> None:
    proc = run("aggregate", stdin=BODY.rstrip(b"\n"))
    assert proc.returncode == 0
    assert b"warning: stream ended without the blank line" in proc.stderr


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("streamshim")
    proc = subprocess.run([str(exe), "aggregate"], input=BODY, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["object"] == "chat.completion"
