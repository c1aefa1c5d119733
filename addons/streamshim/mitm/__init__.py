"""The mitmproxy layer: small addons that only move bytes and flags, in the style of mitmproxy's
own (one concern each, an explicit list in the entry script ``addons/streamshim.py``). Only this
package (and the CLI's flow-file commands) imports mitmproxy.

- ``Rules`` (``rules_addon.py``): the rules file option, reload on change, ``streamshim.reload``
- ``Shim`` (``shim.py``): the request and response hooks; the stream callables are ``streams.py``
- ``Conformance`` (``conformance.py``): the in-proxy check of every stream, after its flow ended
- ``Scrub`` (``scrub.py``): masking secrets, scrub-on-save, ``streamshim.scrub``
- ``LLMView`` (``contentview.py``): the "LLM stream" content view on mitmproxy 11 and 12
- ``FlowState`` (``state.py``): the typed per-flow state in ``flow.metadata["streamshim"]``
- ``recording.py``: flow files as fixtures, replay, the two sides of a flow
"""

from __future__ import annotations

from .conformance import Conformance
from .contentview import LLMView
from .rules_addon import Rules
from .scrub import Scrub
from .shim import Shim
from .state import FlowState

__all__ = ["Conformance", "FlowState", "LLMView", "Rules", "Scrub", "Shim"]
