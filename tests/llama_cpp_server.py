"""llama.cpp's own C++ ``llama-server`` on the tiny GGUF of ``tinymodel.py``: the real upstream of
the slow tier for the Responses (``/v1/responses``) and Anthropic Messages (``/v1/messages``)
dialects, besides ``/v1/chat/completions``.

The binary is built by ``tests/build_llama_server.sh`` into
``${XDG_CACHE_HOME:-~/.cache}/streamshim/llama-server-0.3.36/`` (``STREAMSHIM_LLAMA_SERVER`` names
another directory, or the binary itself). Without it, :func:`start_llama_cpp_server` skips.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from proxy import LoggedProcess, free_port
from tinymodel import write_tiny_gguf

VERSION = "0.3.36"
# chatml with Hermes-style <tool_call> JSON that llama.cpp's autoparser recognises; it renders only the
# first call of a turn, so llama.cpp treats it as single-call (no parallel calls that never stop)
CHATML_TOOLS_TEMPLATE = Path(__file__).with_name("chatml_tools.jinja")


def llama_server_binary() -> Path | None:
    """The built ``llama-server``, or None: ``$STREAMSHIM_LLAMA_SERVER`` (a directory holding
    ``llama-server``, or the binary) or the build script's default cache directory."""
    explicit = os.environ.get("STREAMSHIM_LLAMA_SERVER")
    if explicit:
        where = Path(explicit).expanduser()
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        where = cache / "streamshim" / f"llama-server-{VERSION}"
    binary = where if where.is_file() else where / "llama-server"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


class LlamaCppServer(LoggedProcess):
    """``llama-server -m tiny.gguf`` on a free port of 127.0.0.1, its output in ``llama-server.log``.

    The model is served as ``tiny``; ``--seed 0`` and a temperature of 0 in the request make the
    answers deterministic (stream and JSON carry the same text). ``chat_template_file`` replaces
    the model's chatml template (``--jinja --chat-template-file``), e.g. one that llama.cpp's chat
    parser recognises for tool calls."""

    name = "llama-server"

    def __init__(
        self,
        workdir: Path,
        binary: Path,
        *,
        chat_template_file: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.model = write_tiny_gguf(workdir / "tiny.gguf", seed=0)
        self.port = free_port()
        self.chat_template_file = chat_template_file
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        args = [
            str(self.binary),
            "--model",
            str(self.model),
            "--alias",
            "tiny",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ctx-size",
            "2048",
            "--seed",
            "0",
            "--no-webui",
        ]
        if self.chat_template_file is not None:
            args += ["--jinja", "--chat-template-file", str(self.chat_template_file)]
        return args + self.extra_args

    def start(self, timeout: float = 60.0) -> LlamaCppServer:
        """Start it and wait until ``/health`` answers 200 (the model is loaded)."""
        self.launch(self.args(), [self.port])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llama-server did not become healthy:\n{self.log()}")


def start_llama_cpp_server(
    workdir: Path, *, chat_template_file: Path | None = None, extra_args: Sequence[str] = ()
) -> LlamaCppServer:
    """A started :class:`LlamaCppServer`, or ``pytest.skip`` when the binary is not built."""
    binary = llama_server_binary()
    if binary is None:
        pytest.skip(
            "llama.cpp's llama-server is not built: run `bash tests/build_llama_server.sh` (~10 CPU-minutes)"
            " or point STREAMSHIM_LLAMA_SERVER at a llama-server binary"
        )
    server = LlamaCppServer(workdir, binary, chat_template_file=chat_template_file, extra_args=extra_args)
    return server.start()
