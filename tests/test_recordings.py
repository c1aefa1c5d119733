"""Recordings as regression fixtures: every file in recordings/ replays through the current
addon with the answer the client got when it was captured; no secret is in any of them; mitmdump's
own server replay serves them offline; scrubbing removes every secret from a capture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fault_upstream import FaultUpstream
from proxy import ROOT, Mitmdump, read_flows
from streamshim.dialects import chat
from streamshim.meaning import meaning
from streamshim.mitm.recording import expected_response, replay_flow
from streamshim.mitm.scrub import find_secrets
from streamshim.mitm.state import META

RECORDINGS = sorted((ROOT / "recordings").glob("*.flow"))
SECRETS = [b"sk-streamshim-recording-secret", b"azure-secret-key", b"sk-ant-streamshim", b"secret-cookie"]


def test_there_are_recordings_of_every_kind() -> None:
    names = {p.stem for p in RECORDINGS}
    for case in ("text", "tool", "length"):
        for client in ("stream-client", "json-client"):
            for rule in ("upstream-stream", "upstream-json", "as-requested"):
                assert f"llama-{case}__{client}__{rule}" in names
    assert {n.split("__")[0] for n in names if n.startswith("fault-")} >= {
        "fault-disconnect",
        "fault-error-event",
        "fault-gzip",
    }
    for case in ("text", "tool"):  # the Responses API, from llama.cpp's llama-server
        for client in ("stream-client", "json-client"):
            for rule in ("upstream-stream", "upstream-json", "as-requested"):
                assert f"llama-server-responses-{case}__{client}__{rule}" in names
    for case in ("text", "tool"):  # Anthropic Messages, from llama.cpp's llama-server
        for client in ("stream-client", "json-client"):
            for rule in ("upstream-stream", "upstream-json", "as-requested"):
                assert f"anthropic-{case}__{client}__{rule}" in names
    assert {n.split("__")[0] for n in names if n.startswith("anthropic-fault-")} >= {
        "anthropic-fault-overloaded",
        "anthropic-fault-cut-tool",
        "anthropic-fault-spliced",
    }
    assert sum(p.stat().st_size for p in RECORDINGS) < 1_000_000


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_recording_replays_unchanged(path: Path) -> None:
    flows = list(read_flows(path))
    assert len(flows) == 1
    outcome = replay_flow(flows[0], path.name)
    assert outcome.ok, "\n".join(outcome.diffs)


def test_replay_cli_over_the_folder() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamshim.cli", "replay", str(ROOT / "recordings")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"{len(RECORDINGS)} passed, 0 failed")


def test_breaking_tool_call_merging_fails_the_replay_with_a_pointed_diff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat._Choice, "merge_tool_calls", lambda self, deltas: None)
    path = ROOT / "recordings" / "llama-tool__json-client__upstream-stream.flow"
    outcome = replay_flow(next(iter(read_flows(path))), path.name)
    assert not outcome.ok
    assert any(d.startswith('choices[0].tool_calls: recorded [["get_weather"') for d in outcome.diffs), (
        outcome.diffs
    )


def test_update_rewrites_the_expectation(tmp_path: Path) -> None:
    src = ROOT / "recordings" / "llama-text__json-client__upstream-stream.flow"
    copy = tmp_path / src.name
    flows = list(read_flows(src))
    record = flows[0].metadata[META]["client_response"]
    body = json.loads(record["body"])
    body["choices"][0]["message"]["content"] = "something else"
    record["body"] = json.dumps(body).encode()
    from streamshim.mitm.recording import write_flows

    write_flows(copy, flows)
    run = [sys.executable, "-m", "streamshim.cli", "replay", str(copy)]
    failed = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1
    assert "choices[0].content: recorded 'something else', now" in failed.stdout
    assert subprocess.run([*run, "--update"], capture_output=True, timeout=120, check=False).returncode == 0
    assert subprocess.run(run, capture_output=True, timeout=120, check=False).returncode == 0


def test_no_secret_in_any_committed_recording() -> None:
    for path in RECORDINGS:
        raw = path.read_bytes()
        assert find_secrets(raw) == [], path.name
        for secret in SECRETS:
            assert secret not in raw, (path.name, secret)
        assert b"[scrubbed]" in raw


@pytest.mark.parametrize(
    "name,rule",
    [
        ("llama-tool__json-client__upstream-stream", "stream"),
        ("llama-text__stream-client__upstream-json", "json"),
        ("llama-server-responses-tool__json-client__upstream-stream", "stream"),
        ("llama-server-responses-text__stream-client__upstream-json", "json"),
        ("anthropic-tool__json-client__upstream-stream", "stream"),
        ("anthropic-tool__stream-client__upstream-json", "json"),
    ],
)
def test_offline_server_replay_through_the_addon(tmp_path: Path, name: str, rule: str) -> None:
    recording = ROOT / "recordings" / f"{name}.flow"
    flow = next(iter(read_flows(recording)))
    rules = f"rules:\n  - name: replay\n    upstream: {rule}\n"
    own = Mitmdump(
        tmp_path,
        {"r": "http://127.0.0.1:9"},  # nothing listens there: only the replay answers
        rules,
        "--server-replay",
        str(recording),
        "--set",
        "connection_strategy=lazy",
        "--set",
        "server_replay_ignore_host=true",
        "--set",
        "server_replay_ignore_port=true",
    ).start()
    try:
        r = httpx.post(
            f"{own.url('r')}{flow.request.path}",
            timeout=30,
            content=flow.metadata[META]["client_request"],
            headers={"content-type": "application/json"},
        )
    finally:
        own.stop()
    want = expected_response(flow)
    assert r.status_code == 200, own.log()
    got = meaning(r.status_code, list(r.headers.items()), r.content)
    assert got == meaning(want["status"], want["headers"], want["body"])
    assert got["shape"] == ("json" if rule == "stream" else "sse")


def test_capture_with_scrub_leaves_no_secret(fault: FaultUpstream, tmp_path: Path) -> None:
    headers = {
        "authorization": "Bearer sk-capture-secret-0123456789",
        "x-api-key": "sk-other-secret-01234567",
        "cookie": "sid=cookie-secret-0123",
        "x-team-token": "team-secret-0123",
    }
    own = Mitmdump(
        tmp_path,
        {"s": fault.url},
        "rules:\n  - name: s\n    listen_port: {s}\n    upstream: stream\n",
        "--set",
        "streamshim_scrub=true",
        "--set",
        "streamshim_scrub_headers=x-team-token",
        "--set",
        "streamshim_scrub_fields=user",
    ).start()
    try:
        for stream in (False, True):
            httpx.post(
                f"{own.url('s')}/v1/chat/completions?api-key=query-secret-0123",
                headers=headers,
                json={"model": "sse", "stream": stream, "messages": [], "user": "user-secret-0123"},
                timeout=30,
            )
    finally:
        own.stop()
    raw = own.flows_path.read_bytes()
    assert len(list(read_flows(own.flows_path))) == 2
    for secret in (
        b"sk-capture-secret",
        b"sk-other-secret",
        b"cookie-secret",
        b"team-secret",
        b"query-secret",
        b"user-secret",
    ):
        assert secret not in raw, secret
    assert find_secrets(raw) == []


def test_scrub_cli_on_an_unscrubbed_capture(fault: FaultUpstream, tmp_path: Path) -> None:
    own = Mitmdump(
        tmp_path, {"s": fault.url}, "rules:\n  - name: s\n    listen_port: {s}\n    upstream: stream\n"
    )
    own.start()
    try:
        httpx.post(
            f"{own.url('s')}/v1/chat/completions",
            headers={"authorization": "Bearer sk-unscrubbed-0123456"},
            json={"model": "sse", "messages": [], "user": "alice-secret-0123"},
            timeout=30,
        )
    finally:
        own.stop()
    assert b"sk-unscrubbed" in own.flows_path.read_bytes()  # the capture itself holds the key
    out = tmp_path / "clean.flow"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamshim.cli",
            "scrub",
            str(own.flows_path),
            str(out),
            "--field",
            "user",
            "--fixture",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    raw = out.read_bytes()
    assert b"sk-unscrubbed" not in raw and b"alice-secret" not in raw
    clean = next(iter(read_flows(out)))
    assert clean.request.headers["authorization"] == "[scrubbed]"
    assert json.loads(clean.metadata[META]["client_request"])["user"] == "[scrubbed]"
    assert clean.response.headers["content-type"].startswith("text/event-stream")  # the upstream's answer
    assert replay_flow(clean).ok


def test_flows_loaded_from_a_file_leave_no_live_stream() -> None:
    """``mitmdump -r`` runs the hooks on loaded flows: a streamed one gets a stream callable that
    never runs, and must not be counted as a live stream left at shutdown."""
    from proxy import ADDON, MITMDUMP

    files = [p for p in RECORDINGS if p.stem.endswith("stream-client__as-requested")]
    assert len(files) >= 6
    args = [str(MITMDUMP), "-n", "-s", str(ADDON)] + [a for f in files for a in ("-r", str(f))]
    out = subprocess.run(args, capture_output=True, timeout=60, check=False)
    text = out.stdout.decode() + out.stderr.decode()
    assert "streamshim: 0 live stream(s) at shutdown" in text, text[-2000:]
