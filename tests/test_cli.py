"""The command line, run as a real subprocess the way users run it."""

from __future__ import annotations

import json
import os
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


def run(*args: str, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``python -m streamshim.cli ARGS`` in a subprocess, as users run it (the other test modules
    run the CLI through this too)."""
    return subprocess.run(
        [sys.executable, "-m", "streamshim.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def run_text(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``run``, its output decoded (UTF-8, as the CLI writes it)."""
    done = run(*args, timeout=timeout)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


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
    assert "middle of an event" in err and "(--partial prints what was aggregated before the fault)" in err
    assert err.count("\n") == 1  # one line per error
    assert proc.stdout == b""
    partial = run("aggregate", "--partial", stdin=cut)
    assert partial.returncode == 1
    assert json.loads(partial.stdout)["choices"][0]["message"]["content"] == "Hi"

    errored = run("aggregate", stdin=sse(chunk(delta(content="x")), {"error": {"message": "rate limited"}}))
    assert errored.returncode == 1 and b"upstream_error at event 2" in errored.stderr
    assert b"rate limited" in errored.stderr

    bad = run("synthesize", stdin=b"{not json")
    assert bad.returncode == 2 and bad.stderr.startswith(b"streamshim: <stdin>: not JSON: Expecting")
    missing = run("aggregate", "/nonexistent/file.sse")
    assert missing.returncode == 2
    assert missing.stderr == b"streamshim: /nonexistent/file.sse: cannot read: No such file or directory\n"
    assert run("synthesize", "--chunk-chars", "0", stdin=b"{}").returncode == 2


def test_warning_for_missing_final_blank_line() -> None:
    proc = run("aggregate", stdin=BODY.rstrip(b"\n"))
    assert proc.returncode == 0
    assert b"warning: stream ended without the blank line" in proc.stderr


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("streamshim")
    proc = subprocess.run([str(exe), "aggregate"], input=BODY, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["object"] == "chat.completion"


# -- one convention for every command: 0 ok, 1 a finding, 2 bad input; one line per error ---------

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "recordings" / "llama-tool__stream-client__as-requested.flow"
GARBAGE = b"\x89PNG\r\n\x1a\n\x00\x1b[2J\x1b]0;pwned\x07\xe2\x80\xae\xff\xfe" + bytes(range(256))
MISSING = "/nonexistent/input"


def one_safe_line(stderr: bytes) -> str:
    """stderr as one line of printable ASCII-safe text, no traceback."""
    text = stderr.decode("utf-8")
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert text.startswith("streamshim: ") and "Traceback" not in text
    assert all(c.isprintable() for c in text[:-1]), text
    return text[:-1]


def test_every_command_exits_2_on_a_missing_file(tmp_path: Path) -> None:
    good = tmp_path / "good.sse"
    good.write_bytes(BODY)
    for args in (
        ["aggregate", MISSING],
        ["synthesize", MISSING],
        ["scrub", MISSING, str(tmp_path / "out.flow")],
        ["replay", MISSING],
        ["check", MISSING],
        ["diff", MISSING, str(good)],
        ["diff", str(good), MISSING],
    ):
        proc = run(*args)
        assert proc.returncode == 2, args
        assert one_safe_line(proc.stderr) == f"streamshim: {MISSING}: cannot read: No such file or directory"
    replay = run("replay", MISSING)
    assert replay.stdout == b"0 passed, 0 failed\n"  # was "-1 passed, 1 failed"


def test_files_that_are_not_flow_files(tmp_path: Path) -> None:
    """``replay``/``scrub`` of a file that is no flow file printed FlowReadException's traceback."""
    garbage, text = tmp_path / "garbage.flow", tmp_path / "notes.txt"
    garbage.write_bytes(GARBAGE)
    text.write_text("hello\n")
    for path in (garbage, text):
        for args in (["replay", str(path)], ["scrub", str(path), str(tmp_path / "out.flow")]):
            proc = run(*args)
            assert proc.returncode == 2, args
            line = one_safe_line(proc.stderr)
            assert line.startswith(f"streamshim: {path}: not a readable mitmproxy flow file ("), line
    assert not (tmp_path / "out.flow").exists()
    assert run("check", str(garbage)).returncode == 2  # taken as a body: neither SSE nor a flow file
    # a file that looks like a flow file (a tnetstring) but is not one
    fake = tmp_path / "fake.flow"
    fake.write_bytes(b"12:3:abc;1:x,}")
    for args in (["check", str(fake)], ["diff", str(fake), str(fake)], ["replay", str(fake)]):
        proc = run(*args)
        assert proc.returncode == 2 and "not a readable mitmproxy flow file" in one_safe_line(proc.stderr)


def test_binary_garbage_is_never_echoed_raw(tmp_path: Path) -> None:
    """``aggregate`` on binary garbage printed the bytes (as U+FFFD soup) to the terminal."""
    path = tmp_path / "garbage.bin"
    path.write_bytes(GARBAGE)
    for args in (["aggregate", str(path)], ["synthesize", str(path)], ["diff", str(path), str(path)]):
        proc = run(*args)
        assert proc.returncode == 2 and proc.stdout == b"", args
        line = one_safe_line(proc.stderr)
        assert "\ufffd" not in line and "\\x1b[2J" in line and "\\x89PNG" in line, line


def test_what_comes_from_the_input_is_escaped(tmp_path: Path) -> None:
    """An upstream's error message, a malformed payload: their escape sequences reached the
    terminal as they were (``\\x1b]0;…\\x07`` sets the window title, ``\\x1b[2J`` clears it)."""
    hostile = "\x1b]0;pwned\x07\x1b[2J\u202e\x9b31m"
    errored = sse(chunk(delta(role="assistant", content="x")), {"error": {"message": hostile}})
    proc = run("aggregate", stdin=errored)
    assert proc.returncode == 1
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b31m" in one_safe_line(proc.stderr)
    body = tmp_path / "bad.sse"
    body.write_bytes(b'data: {"id": "' + hostile.encode() + b"\n\n")
    check = run("check", str(body))
    assert check.returncode == 1
    out = check.stdout.decode()
    assert "malformed-json" in out and "\\x1b]0;pwned\\x07" in out
    assert all(c.isprintable() for line in out.splitlines() for c in line)


def test_a_closed_pipe_ends_quietly() -> None:
    """``streamshim check … | head`` died with a BrokenPipeError traceback: now it stops with
    nothing on stderr and 141, what a shell reports for a command killed by SIGPIPE."""
    for args in (["check", "--all", str(FLOW)], ["aggregate"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first byte: as `| head` after its lines
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "streamshim.cli", *args],
                input=BODY,
                stdout=write,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
            )
        finally:
            os.close(write)
        assert (proc.returncode, proc.stderr) == (141, b""), args


def test_the_input_a_command_does_not_take(tmp_path: Path) -> None:
    """2 when the input is not what the command reads (not SSE, not JSON); 1 when it is, and
    what it says is a failure (a broken stream, an error body, a body that is no completion)."""
    sse_file, json_file, error_file = tmp_path / "a.sse", tmp_path / "a.json", tmp_path / "e.json"
    sse_file.write_bytes(BODY)
    json_file.write_text(json.dumps(aggregate(BODY)))
    error_file.write_text('{"error": {"message": "rate limited"}}')
    cases = [
        (["aggregate", str(json_file)], 2, f"streamshim: {json_file}: not an SSE stream: it is JSON"),
        (["aggregate", str(tmp_path / "empty")], 2, None),
        (["synthesize", str(sse_file)], 2, f"streamshim: {sse_file}: not JSON: it is an SSE stream"),
        (
            ["synthesize", str(error_file)],
            1,
            f"streamshim: {error_file}: the body is an error response, not an answer",
        ),
        (["aggregate"], 1, None),  # a comment only: SSE, with no data event (check: not-sse, an error)
        (
            ["check", str(json_file)],
            2,
            f"streamshim: {json_file}: neither an SSE stream nor a flow file: it is JSON",
        ),
        (["diff", str(sse_file), str(tmp_path)], 2, f"streamshim: {tmp_path}: cannot read: Is a directory"),
        (
            ["replay", str(tmp_path)],
            2,
            f"streamshim: {tmp_path}: no flow files (*.flow, *.flows, *.mitm) in this folder",
        ),
        (["scrub", str(FLOW), str(tmp_path / "no" / "out.flow")], 2, None),
        (["check", "--n", "0", str(sse_file)], 2, None),  # argparse
    ]
    (tmp_path / "empty").write_bytes(b"")
    for args, code, line in cases:
        proc = run(*args, stdin=b": ping\n\n")
        assert proc.returncode == code, (args, proc.stderr)
        got = one_safe_line(proc.stderr) if code != 2 or args[1] != "--n" else ""
        if line is not None:
            assert got == line
    assert (
        "cannot write: No such file or directory"
        in run("scrub", str(FLOW), str(tmp_path / "no" / "out.flow")).stderr.decode()
    )
    assert run("synthesize", stdin=b'{"choices": [{"text": 1}], "object": "chat.completion"}').returncode == 1


def test_the_highest_code_wins(tmp_path: Path) -> None:
    """Every input is still looked at, and a run that could not read one is never clean."""
    broken = tmp_path / "cut.sse"
    broken.write_bytes(BODY[:-20])
    ok = run("check", str(FLOW), MISSING)
    assert ok.returncode == 2 and ok.stdout.decode().startswith(f"{FLOW}#0 upstream: chat stream")
    assert run("check", str(broken), MISSING).returncode == 2
    assert run("check", str(broken), str(FLOW)).returncode == 1
    replay = run("replay", str(FLOW), MISSING)
    assert replay.returncode == 2 and replay.stdout.decode().endswith("1 passed, 0 failed\n")


def test_a_damaged_recording_is_bad_input(tmp_path: Path) -> None:
    from mitmproxy.io import tnetstring

    state = tnetstring.loads(FLOW.read_bytes())
    assert isinstance(state, dict)
    state["metadata"]["streamshim"]["client_response"] = -1
    damaged = tmp_path / "damaged.flow"
    damaged.write_bytes(tnetstring.dumps(state))
    expected = (
        f"streamshim: {damaged}#0: cannot be replayed: metadata streamshim.client_response is a int (-1)"
    )
    replay = run("replay", str(damaged))
    assert (replay.returncode, one_safe_line(replay.stderr)) == (2, expected)
    for args in (["check", str(damaged)], ["scrub", str(damaged), str(tmp_path / "o.flow")]):
        proc = run(*args)
        assert proc.returncode == 2 and "client_response is a int (-1)" in one_safe_line(proc.stderr)


def test_a_lone_surrogate_in_the_output() -> None:
    """JSON allows ``"\\ud800"``; UTF-8 has no form for it: printing the aggregated JSON raised
    UnicodeEncodeError. It is written as its JSON escape."""
    proc = run(
        "aggregate", stdin=sse(chunk(delta(role="assistant", content="a\ud800", finish_reason="stop")))
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert b'"content": "a\\ud800"' in proc.stdout
    assert json.loads(proc.stdout)["choices"][0]["message"]["content"] == "a\ud800"


def test_replay_writes_only_its_report() -> None:
    """The addon's log lines (a fault recording's "SSE→JSON failed: …") are for mitmproxy's event
    log: in the CLI they reached stderr through Python's last-resort handler, beside no
    ``streamshim:`` prefix."""
    proc = run("replay", str(ROOT / "recordings"))
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert proc.stdout.decode().endswith(" passed, 0 failed\n")
