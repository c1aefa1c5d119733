"""Test-only mitmproxy addon: write ``--set ready_file=PATH`` once mitmproxy has finished starting.

A listening port is not readiness: mitmproxy binds its listeners before its addons' ``running``
hooks run, and its TLS addon creates the certificate store only there. A request in between fails
in that addon ("'NoneType' object has no attribute 'default_ca'"), and an error logged during
startup makes mitmdump exit. ``tests/proxy.py`` therefore waits for this file as well."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mitmproxy import ctx


class Ready:
    def load(self, loader: Any) -> None:
        loader.add_option("ready_file", str, "", "Write this file once mitmproxy is running (tests).")

    def running(self) -> None:
        # the remaining running hooks (the TLS addon's among them) are synchronous and run before
        # the event loop gets control back: a callback scheduled now runs after all of them
        if ctx.options.ready_file:
            asyncio.get_running_loop().call_soon(Path(ctx.options.ready_file).write_text, "running\n")


addons = [Ready()]
