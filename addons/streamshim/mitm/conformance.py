"""The in-proxy conformance check: every stream (the upstream's, and the client's when
streamshim made it) is checked against its dialect's contract once its flow has ended, off the
client's path; the result goes into the flow's comment, mark, log and metadata."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import ctx, hooks, http
from mitmproxy.tools.dump import DumpMaster

from .flowtools import MARK_PROBLEM, MARK_WARNING
from .recording import check_flow
from .state import FlowState

log = logging.getLogger("streamshim")

CHECK_MAX_BYTES = 64 * 1024 * 1024  # larger streams are not checked in the proxy
CHECK_KEEP = 50  # findings kept in the flow's metadata (the comment has the counts)


class Conformance:
    def __init__(self) -> None:
        self.enabled = False  # set from streamshim_check in `configure`

    def load(self, loader: Any) -> None:
        loader.add_option(
            "streamshim_check",
            str,
            "auto",
            "Check every LLM stream (the upstream's, and the client's when streamshim made it) against "
            "its API's contract once its flow has ended: the result is added to the flow's comment and "
            "log, the flow is marked :warning: on an error finding and :large_orange_diamond: on warnings "
            "only, the findings are kept in its metadata (streamshim.check). auto: on in mitmweb and the "
            "console UI, where flows are looked at; off in mitmdump, where it would cost CPU on the hot "
            "path (`streamshim check FILE` checks saved flows).",
            choices=("auto", "on", "off"),
        )

    def configure(self, updated: set[str]) -> None:
        if "streamshim_check" in updated:
            mode = ctx.options.streamshim_check
            self.enabled = mode == "on" or (mode == "auto" and not isinstance(ctx.master, DumpMaster))

    def response(self, flow: http.HTTPFlow) -> None:
        self._after(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        state = FlowState.of(flow)
        if state is not None and state.streamed:  # a stream that broke: what arrived is checked
            self._after(flow)

    def _after(self, flow: http.HTTPFlow) -> None:
        """Check the flow's streams once this hook has returned (the client's last bytes are not
        held back by it); outside a running event loop (``streamshim replay``), now."""
        if not self.enabled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.check(flow, notify=False)
        else:
            loop.call_soon(self.check, flow, True)

    def check(self, flow: http.HTTPFlow, notify: bool) -> None:
        state = FlowState.of(flow)
        if state is None or flow.response is None:
            return
        size = max(len(flow.response.raw_content or b""), len(state.upstream_response or b""))
        if size > CHECK_MAX_BYTES:
            reports = {}
            summary = f"check skipped: {size} B is over {CHECK_MAX_BYTES} B"
        else:
            reports = check_flow(flow)
            summary = "; ".join(f"check {side}: {r.summary()}" for side, r in reports.items())
        if not summary:
            return
        state.check = {
            side: {
                "summary": r.summary(),
                "findings": [[f.code, f.severity, f.event, f.message] for f in r.findings[:CHECK_KEEP]],
            }
            for side, r in reports.items()
        }
        state.save(flow)
        flow.comment = f"{flow.comment}\n{summary}" if flow.comment else summary
        errors = any(r.errors for r in reports.values())
        if errors:
            flow.marked = MARK_PROBLEM
        elif any(r.findings for r in reports.values()) and flow.marked != MARK_PROBLEM:
            flow.marked = MARK_WARNING
        (log.warning if errors else log.info)(
            "%s %s: %s", flow.request.method, flow.request.pretty_url, summary
        )
        if notify:  # mitmweb shows the change
            ctx.master.addons.trigger(hooks.UpdateHook([flow]))
