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


def test_every_check_code_is_documented_with_its_severity() -> None:
    """One code table per dialect (or per dialects sharing one set of codes), right under a
    paragraph that names them in backticks (`` `chat` ``, `` `anthropic` ``); every dialect has one."""
    from streamshim import dialects
    from streamshim.check import codes

    tables = re.findall(
        r"((?:^[^|\n][^\n]*\n)+)\n\| code \| severity \| meaning \|\n\|---\|---\|---\|\n((?:\|[^\n]*\n)+)",
        README,
        flags=re.M,
    )
    covered = set()
    for paragraph, body in tables:
        rows = dict(re.findall(r"^\| `([a-z-]+)` \| (error|warning) \|", body, flags=re.M))
        named = [n for n in re.findall(r"`([a-z]+)`", paragraph) if n in dialects.BY_NAME]
        assert named, f"no dialect named above the table: {paragraph!r}"
        for name in named:
            assert rows == {code: severity for code, (severity, _) in codes(name).items()}, name
        covered.update(named)
    assert covered == set(dialects.names())


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
