"""The product's addons, exactly as the entry script ``addons/streamshim.py`` lists them, driven
as one in unit tests: each hook is called on every addon in list order, as mitmproxy does."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from mitmproxy import http
from streamshim.mitm import Conformance, Rules, Scrub, Shim
from streamshim.rules import RuleSet

ENTRY = Path(__file__).resolve().parents[1] / "addons" / "streamshim.py"


class StreamShim:
    """Register it with ``taddons.context(x)`` (its ``addons`` are what mitmproxy loads) and call
    its hooks directly."""

    def __init__(self) -> None:
        self.addons: list[Any] = list(runpy.run_path(str(ENTRY))["addons"])
        self.rules_addon = next(a for a in self.addons if isinstance(a, Rules))
        self.shim = next(a for a in self.addons if isinstance(a, Shim))
        self.conformance = next(a for a in self.addons if isinstance(a, Conformance))
        self.scrubber = next(a for a in self.addons if isinstance(a, Scrub))

    @property
    def rules(self) -> RuleSet:
        return self.rules_addon.rules

    @property
    def live(self) -> dict[str, Any]:
        return self.shim.live

    @property
    def check_streams(self) -> bool:
        return self.conformance.enabled

    def reload(self) -> None:
        self.rules_addon.reload()

    def _hook(self, name: str, *args: Any) -> None:
        for addon in self.addons:
            hook = getattr(addon, name, None)
            if hook is not None:
                hook(*args)

    def request(self, flow: http.HTTPFlow) -> None:
        self._hook("request", flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._hook("responseheaders", flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._hook("response", flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._hook("error", flow)

    def done(self) -> None:
        self._hook("done")
