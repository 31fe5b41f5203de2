"""Debian's headless Chromium (never Playwright's own download) and the flags every test
launches it with: no sandbox (tests run as root in CI), no GPU, and none of the browser's
own traffic (updates, sync, first-run pages, QUIC) to slow a test down or reach the network.

Here rather than in tests/browser/conftest.py so that test modules elsewhere (the
behind-proxies test) import a plain module, not a conftest.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
