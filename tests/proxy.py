"""A real ``mitmdump -s addons/streamshim.py`` subprocess in reverse mode on 127.0.0.1."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

from fault_upstream import wait_port
from mitmproxy import http, io

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "addons" / "streamshim.py"
FLUSH_SAVES = Path(__file__).with_name("flush_saves.py")
READY = Path(__file__).with_name("ready.py")
MITMDUMP = Path(sys.executable).with_name("mitmdump")


_GIVEN: set[int] = set()  # ports this test process has handed out


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open until all are chosen), none handed out before in
    this process: the kernel may offer a just-released port again, and two proxies built one
    after the other, then started together, would race for it."""
    held: list[socket.socket] = []  # every socket bound here, open until all ports are chosen
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in _GIVEN:
                ports.append(port)
        _GIVEN.update(ports)
        return ports
    finally:
        for s in held:
            s.close()


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server subprocess and wait for it (killing it if it will not go)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def free_port() -> int:
    return free_ports(1)[0]


class ServerThread:
    """A test upstream: an ``http.server`` server on 127.0.0.1, served from a daemon thread."""

    scheme = "http"

    def __init__(self, server: http.server.HTTPServer, name: str) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class LoggedProcess:
    """A server subprocess run in ``workdir`` with its output in ``<name>.log`` there."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self, args: list[str], ports: Iterable[int], ready_file: Path | None = None) -> None:
        """Start ``args`` and wait until every port listens and, if given, ``ready_file`` exists
        (``RuntimeError`` with the log if not)."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            for port in ports:
                wait_port("127.0.0.1", port, timeout=30)
            deadline = time.monotonic() + 30
            while ready_file is not None and not ready_file.exists():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise TimeoutError
                time.sleep(0.02)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log()}") from None

    def stop(self) -> None:
        stop_process(self.proc)
        if hasattr(self, "_log"):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Mitmdump(LoggedProcess):
    """``listeners``: label → upstream URL; each label gets a port (``ports[label]``), and the rules
    text may use ``{label}`` placeholders for those ports."""

    name = "mitmdump"

    def __init__(
        self, workdir: Path, listeners: dict[str, str], rules: str, *extra: str, save: bool = True
    ) -> None:
        super().__init__(workdir)
        self.ports = dict(zip(listeners, free_ports(len(listeners)), strict=True))
        self.listeners = listeners
        self.rules_path = workdir / "rules.yaml"
        self.rules_path.write_text(rules.format(**self.ports))
        self.flows_path = workdir / "flows.mitm"
        self.save = save  # -w flows.mitm
        self.ready_path = workdir / "mitmdump.ready"
        self.extra = extra

    def url(self, label: str) -> str:
        return f"http://127.0.0.1:{self.ports[label]}"

    def start(self) -> Mitmdump:
        args = [
            str(MITMDUMP),
            "-s",
            str(ADDON),
            "-s",
            str(FLUSH_SAVES),
            "-s",
            str(READY),
            "--set",
            f"ready_file={self.ready_path}",
            "--listen-host",
            "127.0.0.1",
            *(["-w", str(self.flows_path)] if self.save else []),
            "--set",
            f"streamshim_rules={self.rules_path}",
            *self.extra,
        ]
        for label, upstream in self.listeners.items():
            args += ["--mode", f"reverse:{upstream}@{self.ports[label]}"]
        self.ready_path.unlink(missing_ok=True)
        self.launch(args, self.ports.values(), self.ready_path)
        return self

    def flows(self) -> list[http.HTTPFlow]:
        """The flows mitmdump has written so far (``-w``)."""
        return list(read_flows(self.flows_path))

    def flow_with(self, marker: bytes, timeout: float = 10.0) -> http.HTTPFlow:
        """The written flow whose client request contains ``marker``, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in read_flows(self.flows_path):
                original = (f.metadata.get("streamshim") or {}).get("client_request") or f.request.content
                if marker in (original or b""):
                    return f
            time.sleep(0.05)
        raise AssertionError(f"no flow with {marker!r} written to {self.flows_path}")


def read_flows(path: Path) -> Iterator[http.HTTPFlow]:
    if not path.exists():
        return
    with path.open("rb") as fh:
        try:
            for f in io.FlowReader(fh).stream():
                if isinstance(f, http.HTTPFlow):
                    yield f
        except Exception:  # a flow being written right now: stop at the last complete one
            return
