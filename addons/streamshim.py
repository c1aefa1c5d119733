"""mitmproxy entry point: ``mitmdump -s addons/streamshim.py`` (also mitmweb / mitmproxy).

The package ``streamshim`` next to this file holds the code; mitmproxy puts this folder on
``sys.path`` when it loads the script, so no install is needed to run it.
"""

from streamshim.mitm import Conformance, LLMView, Rules, Scrub, Shim

rules = Rules()
# hook order matters: the shim converts a flow before the check and the scrubber see it
addons = [rules, Shim(rules), Conformance(), Scrub(), LLMView()]
