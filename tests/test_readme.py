"""The README's commands: the two a newcomer copies, and every documented proxy binds 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CODE = "\n".join(re.findall(r"```sh\n(.*?)```", README, flags=re.S)).replace("\\\n", " ")


def commands(tool: str) -> list[str]:
    lines = [line for line in CODE.splitlines() if not line.lstrip().startswith("#")]
    return [line for line in lines if re.search(rf"(^|/|\s){tool}\s", line)]


def test_every_documented_proxy_listens_on_loopback_only() -> None:
    mitm = commands("mitmdump") + commands("mitmweb")
    assert len(mitm) >= 6
    for line in mitm:
        assert "--listen-host 127.0.0.1" in line, line
    for line in commands("mitmweb"):
        assert "--web-host 127.0.0.1" in line, line


def test_the_test_command_is_what_ci_runs() -> None:
    assert "bash tests/run.sh" in CODE
    assert "bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_start_command_uses_the_shipped_rules() -> None:
    start = next(line for line in CODE.splitlines() if '"$py" -m venv .venv' in line)
    assert "pip install -e ." in start and "-s addons/streamshim.py" in start
    assert "streamshim_rules" not in start  # the default is the shipped rules.yaml


def code_tables() -> dict[str, dict[str, str]]:
    """Each check-code table of the README, by the dialects named (in backticks) in the paragraph
    right above it: ``{dialect: {code: severity}}``."""
    from streamshim import dialects

    tables: dict[str, dict[str, str]] = {}
    lines = README.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| code | severity |"):
            continue
        above = lines[:i]
        while above and not above[-1].strip():
            above.pop()
        start = max((j for j, t in enumerate(above) if not t.strip()), default=-1) + 1
        before = " ".join(above[start:])  # the paragraph right above the table
        named = [n for n in re.findall(r"`([a-z]+)`", before) if n in dialects.names()]
        assert named, f"the check-code table at line {i + 1} names no dialect: {before!r}"
        rows = {}
        for row in lines[i + 2 :]:
            m = re.match(r"^\| `([a-z-]+)` \| (error|warning) \|", row)
            if not m:
                break
            rows[m[1]] = m[2]
        for name in named:
            assert name not in tables, f"two check-code tables name `{name}`"
            tables[name] = rows
    return tables


def test_every_check_code_is_documented_with_its_severity() -> None:
    """One table per dialect, in step with the code (the chat table covers legacy completions)."""
    from streamshim import dialects
    from streamshim.check import codes

    tables = code_tables()
    assert set(tables) == set(dialects.names())
    for name in dialects.names():
        assert tables[name] == {code: severity for code, (severity, _) in codes(name).items()}, name


def listen_ports(line: str) -> set[int]:
    """The ports a documented mitmdump/mitmweb command listens on (mitmweb's UI: 8081 unless set)."""
    ports = {int(p) for p in re.findall(r"@(\d+)\b", line)} | {int(p) for p in re.findall(r" -p (\d+)", line)}
    if re.search(r"(^|/)mitmweb\s", line):
        web = re.search(r"--web-port (\d+)", line)
        ports.add(int(web.group(1)) if web else 8081)
    return ports


def test_mitmweb_runs_beside_the_other_documented_proxies() -> None:
    # the start command, the forward proxy and the llama-server recipe may all be running
    (web,) = commands("mitmweb")
    others = set().union(*(listen_ports(line) for line in commands("mitmdump")))
    upstreams = {int(p) for p in re.findall(r"localhost:(\d+)", CODE)}
    assert {8001, 8002, 8080, 8081} <= others and 8000 in upstreams
    assert listen_ports(web) and not listen_ports(web) & (others | upstreams), listen_ports(web)


def test_every_cli_example_runs_as_written_after_the_install() -> None:
    """A bare ``streamshim`` is on PATH only inside an activated venv: the examples name the
    console script the install puts in ``.venv/bin``."""
    subcommands = {"aggregate", "synthesize", "scrub", "replay", "check", "diff"}
    runs = [line.strip() for line in commands("streamshim")]
    assert len(runs) >= 8
    for line in runs:
        words = line.split()
        at = next(i for i, w in enumerate(words) if w.endswith("streamshim"))
        assert words[at] == ".venv/bin/streamshim" and words[at + 1] in subcommands, line


def test_the_exit_codes_are_documented() -> None:
    from streamshim import cli

    section = README.split("## The core, from the command line", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", section, flags=re.M))
    assert set(map(int, rows)) == {
        cli.EXIT_OK,
        cli.EXIT_FINDING,
        cli.EXIT_BAD_INPUT,
        cli.EXIT_BROKEN_PIPE,
        cli.EXIT_INTERRUPTED,
    }
