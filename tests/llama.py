"""The real OpenAI-compatible upstream of the slow tier: llama-cpp-python's server on a tiny
random-weight GGUF that ``tinymodel.py`` writes (no download)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from proxy import free_port, stop_process
from tinymodel import write_tiny_gguf


def llama_python() -> str | None:
    """The interpreter that has llama_cpp: this one, or STREAMSHIM_LLAMA_PYTHON (tests/run.sh points
    the mitmproxy 12 suite at the 3.11 venv, so the server is built once)."""
    explicit = os.environ.get("STREAMSHIM_LLAMA_PYTHON")
    if explicit:
        return explicit
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    return sys.executable


class LlamaServer:
    def __init__(self, workdir: Path, python: str) -> None:
        self.model = write_tiny_gguf(workdir / "tiny.gguf", seed=0)
        self.port = free_port()
        self.log_path = workdir / "llama.log"
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        args = [
            self.python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--model_alias",
            "tiny",
            "--chat_format",
            "chatml-function-calling",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "512",
            "--interrupt_requests",
            "false",
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not start:\n{self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        stop_process(self.proc)
        if hasattr(self, "_log"):
            self._log.close()
