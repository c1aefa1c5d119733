"""Regenerate the README's screenshot of the "LLM stream" view in mitmweb.

    .venv-mitm12/bin/python tests/screenshot_mitmweb.py [OUT.png]

Starts mitmweb with the addon (127.0.0.1, web password on for mitmproxy 12) in front of a local
upstream, sends one streamed tool-call request through it, and has headless Chromium
(``/usr/bin/chromium``; ``apt-get install -y chromium``, and ``fonts-noto-color-emoji`` for the
flow marks) photograph the flow's response tab at 1280x800. Default output:
``docs/mitmweb-llm-stream.png``. The same code drives ``tests/test_mitmweb_browser.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from browser import CHROMIUM, SCREENSHOT, Chromium, demo_flow_url
from mitmproxy import version


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else SCREENSHOT
    if not Chromium.available():
        print(f"chromium not found at {CHROMIUM}: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="streamshim-shot-") as tmp:
        upstream, web, url = demo_flow_url(Path(tmp))
        try:
            Chromium().screenshot(url, out)
        finally:
            web.stop()
            upstream.stop()
    print(f"{out}: {out.stat().st_size} bytes (mitmproxy {version.VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
