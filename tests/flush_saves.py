"""Test-only mitmproxy addon: flush mitmdump's ``-w`` file after each flow is saved.

mitmproxy's Save addon writes flows into a buffered file and flushes it only when it exits, so a
test reading the file while mitmdump runs (``Mitmdump.flow_with``) could miss a small flow."""

from __future__ import annotations

import asyncio

from mitmproxy import ctx, http


class FlushSaves:
    def response(self, flow: http.HTTPFlow) -> None:
        asyncio.get_running_loop().call_soon(self._flush)  # after Save has written the flow

    error = response

    def _flush(self) -> None:
        save = ctx.master.addons.get("save")
        if save is not None and save.stream is not None:
            save.stream.fo.flush()


addons = [FlushSaves()]
