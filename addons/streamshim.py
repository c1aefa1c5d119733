"""mitmproxy entry point: ``mitmdump -s addons/streamshim.py`` (also mitmweb / mitmproxy).

The package ``streamshim`` next to this file holds the code; mitmproxy puts this folder on
``sys.path`` when it loads the script, so no install is needed to run it.
"""

from streamshim.addon import StreamShim

addons = [StreamShim()]
