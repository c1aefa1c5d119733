"""The README's start command, as written: the interpreter it picks, what a client gets from it when
the upstream is down, and (slow tier) the whole command run in a fresh copy of the project."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from proxy import MITMDUMP, READY, ROOT, LoggedProcess, free_ports

README = (ROOT / "README.md").read_text(encoding="utf-8")
START = next(b for b in re.findall(r"```sh\n(.*?)```", README, flags=re.S) if "-m venv .venv" in b)
START = " ".join(START.replace("\\\n", " ").split())  # one line, as the shell sees it
FINDER = re.match(r"py=\$\(sh -c '[^']*'\)", START)
MITMDUMP_ARGS = shlex.split(START[START.index(".venv/bin/mitmdump") :])
LAZY = ["--set", "connection_strategy=lazy"]


def test_the_start_command_is_one_command() -> None:
    assert FINDER, f"the start command does not begin by picking the interpreter: {START[:120]}"
    assert START.startswith(FINDER.group(0) + ' && "$py" -m venv .venv && .venv/bin/pip install -e . && ')
    assert MITMDUMP_ARGS[:2] == [".venv/bin/mitmdump", "-s"]


# -- the interpreter it picks -------------------------------------------------------------------


def fake_python(path: Path, ok: bool, shim: bool = False) -> None:
    """An executable that answers the finder's question: "≥ 3.12?" (``ok``), or fails the way a
    pyenv shim does for a version that is installed but not selected."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = 'echo "pyenv: python3.12: command not found" >&2; exit 127' if shim else f"exit {0 if ok else 1}"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def pick(shell: str, tmp_path: Path, **pythons: tuple[bool, bool]) -> tuple[str, str]:
    """Run the README's first line in ``shell`` with only ``pythons`` (name → (ok, shim)) on PATH
    and HOME in tmp_path; returns (the interpreter picked, stderr)."""
    assert FINDER
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    for name, (ok, shim) in pythons.items():
        if name.startswith("~/"):
            fake_python(tmp_path / name[2:], ok, shim)
        else:
            fake_python(bin_dir / name, ok, shim)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    script = FINDER.group(0) + '; printf "%s" "$py"'
    r = subprocess.run([shell, "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True)
    return r.stdout, r.stderr


SHELLS = [s for s in ("bash", "dash", "zsh") if shutil.which(s)]


@pytest.mark.parametrize("shell", SHELLS)
def test_it_picks_pyenvs_312_when_the_shim_fails(shell: str, tmp_path: Path) -> None:
    # this machine: python3 is 3.11, python3.12 is pyenv's shim for a version not selected
    got, err = pick(
        shutil.which(shell) or shell,
        tmp_path,
        python3=(False, False),
        **{"python3.12": (False, True), "~/.pyenv/versions/3.12.1/bin/python3": (True, False)},
    )
    assert got == f"{tmp_path}/.pyenv/versions/3.12.1/bin/python3" and err == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_it_prefers_a_312_on_path_and_takes_python3_when_that_is_one(shell: str, tmp_path: Path) -> None:
    sh = shutil.which(shell) or shell
    assert (
        pick(sh, tmp_path / "a", python3=(False, False), **{"python3.13": (True, False)})[0] == "python3.13"
    )
    assert pick(sh, tmp_path / "b", python3=(True, False))[0] == "python3"


@pytest.mark.parametrize("shell", SHELLS)
def test_without_a_312_it_says_so_and_uses_python3(shell: str, tmp_path: Path) -> None:
    # no pyenv at all: in zsh an unmatched glob is an error, which must not stop the command
    got, err = pick(shutil.which(shell) or shell, tmp_path, python3=(False, False))
    assert got == "python3"
    assert err.strip() == (
        "no Python >= 3.12 found: using python3, which gets mitmproxy 11; "
        "for 12, install Python 3.12+, remove .venv and run this again"
    )


# -- the upstream is down -----------------------------------------------------------------------


class StartCommand(LoggedProcess):
    """The README's mitmdump command line with this interpreter's mitmdump, on free ports, in front
    of a port where nothing listens."""

    name = "mitmdump"

    def __init__(self, workdir: Path, args: list[str]) -> None:
        super().__init__(workdir)
        self.dead, *self.ports = free_ports(3)
        self.args = [a.replace("localhost:8000", f"localhost:{self.dead}") for a in args]
        self.args = [re.sub(r"@800([12])$", lambda m: f"@{self.ports[int(m[1]) - 1]}", a) for a in self.args]
        self.args = [
            str(MITMDUMP),
            *[str(ROOT / a) if a == "addons/streamshim.py" else a for a in self.args[1:]],
        ]
        self.ready = workdir / "ready"

    def start(self) -> StartCommand:
        assert f"--mode reverse:http://localhost:{self.dead}@{self.ports[1]}" in " ".join(self.args)
        self.launch(
            [*self.args, "-s", str(READY), "--set", f"ready_file={self.ready}"], self.ports, self.ready
        )
        return self

    def url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[i]}/v1"


def refused_answer(url: str, port: int) -> None:
    """What a client of the documented command gets when the upstream is down."""
    needle = f"[Errno 111] Connect call failed (&#x27;127.0.0.1&#x27;, {port})"
    with httpx.Client(timeout=30, trust_env=False) as http:
        for stream in (False, True):
            r = http.post(f"{url}/chat/completions", json={"model": "m", "stream": stream, "messages": []})
            assert r.status_code == 502 and needle in r.text, (r.status_code, r.text)
    c = openai.OpenAI(base_url=url, api_key="sk-x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as ei:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 502 and isinstance(ei.value.body, str) and needle in ei.value.body


@pytest.mark.e2e
def test_the_start_command_answers_502_naming_the_refused_connection(tmp_path: Path) -> None:
    lazy = StartCommand(tmp_path / "lazy", MITMDUMP_ARGS)
    # the same line without the option, mitmproxy's default: what the README says happens then
    at = next(i for i in range(len(MITMDUMP_ARGS)) if MITMDUMP_ARGS[i : i + 2] == LAZY)
    eager = StartCommand(tmp_path / "eager", MITMDUMP_ARGS[:at] + MITMDUMP_ARGS[at + 2 :])
    for p in (lazy, eager):
        p.workdir.mkdir()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda p: p.start(), (lazy, eager)))
    try:
        for i in (0, 1):  # both listeners: the streaming path and the direct one
            refused_answer(lazy.url(i), lazy.dead)
        with pytest.raises(httpx.RemoteProtocolError):  # curl: (52) Empty reply from server
            httpx.post(
                f"{eager.url()}/chat/completions", json={"model": "m", "messages": []}, trust_env=False
            )
        with pytest.raises(openai.APIConnectionError) as ei:
            openai.OpenAI(base_url=eager.url(), api_key="sk-x", max_retries=0).chat.completions.create(
                model="m", messages=[]
            )
        assert str(ei.value) == "Connection error."
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda p: p.stop(), (lazy, eager)))
    assert f"Connect call failed ('127.0.0.1', {lazy.dead})" in lazy.log()


# -- the whole command on a fresh copy (slow: creates a venv and installs mitmproxy) ------------


def machine_has_python_312() -> bool:
    """Independently of the README's line: can any Python >= 3.12 on this machine be run?"""
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for c in [
        "python3.12",
        "python3.13",
        "python3.14",
        "python3",
        *sorted(glob.glob(f"{pyenv}/versions/3.1*")),
    ]:
        exe = c if not c.startswith("/") else f"{c}/bin/python3"
        try:
            r = subprocess.run(
                [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if r.stdout.strip() == "True":
            return True
    return False


@pytest.mark.slow
@pytest.mark.e2e
def test_the_start_command_copied_as_written_on_a_fresh_copy(tmp_path: Path) -> None:
    has_312 = machine_has_python_312()
    if has_312 and sys.version_info < (3, 12):
        pytest.skip(
            "the command picks the same interpreter in every suite: it runs in the mitmproxy 12 suite"
        )
    work = tmp_path / "streamshim"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "addons", work / "addons", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "rules.yaml"):
        shutil.copy(ROOT / name, work / name)
    dead, p1, p2 = free_ports(3)
    ready = tmp_path / "ready"
    command = START.replace("localhost:8000@8001", f"localhost:{dead}@{p1}")
    command = command.replace("localhost:8000@8002", f"localhost:{dead}@{p2}")
    command += f" -s {READY} --set ready_file={ready}"  # tells the test when it is up
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    log = (tmp_path / "start.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900  # a cold pip cache downloads mitmproxy and its dependencies
        while not ready.exists():
            text = (tmp_path / "start.log").read_text(errors="replace")
            assert proc.poll() is None, f"the start command exited {proc.returncode}:\n{text[-4000:]}"
            assert time.monotonic() < deadline, f"the start command did not come up:\n{text[-4000:]}"
            time.sleep(0.5)
        venv_python = work / ".venv" / "bin" / "python"
        versions = subprocess.run(
            [venv_python, "-c", "import sys, mitmproxy.version as v; print(sys.version_info[1], v.VERSION)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        minor, mitmproxy = int(versions[0]), versions[1]
        if has_312:
            assert minor >= 12 and mitmproxy.startswith("12."), versions
        else:
            assert mitmproxy.startswith("11."), versions
            assert "no Python >= 3.12 found" in (tmp_path / "start.log").read_text(errors="replace")
        refused_answer(f"http://127.0.0.1:{p1}/v1", dead)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
