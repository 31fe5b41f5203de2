"""axe-core in real Chromium: the accessibility check a reviewer runs, inside our tests.

axe-core comes from the npm registry (tests/browser/package.json, pinned and locked;
`make test` installs it). It is injected with Playwright's `evaluate`, which the DevTools
protocol runs outside the page's Content-Security-Policy: the page under test keeps its real
CSP (no `bypass_csp`), so what is checked is what a user gets.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_JS = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
# What the reviews count: a serious or critical violation fails; moderate/minor are reported.
BLOCKING = frozenset({"serious", "critical"})

_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
  }));
}"""


@cache
def _source() -> str:
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: run `make test` (it installs axe-core with npm)")
    return AXE_JS.read_text(encoding="utf-8")


def violations(page: Page) -> list[dict[str, Any]]:
    """Every axe-core violation on the page as it is now (WCAG 2.x A/AA and best practices)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_source())
    found: list[dict[str, Any]] = page.evaluate(_RUN)
    return found


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """The violations a release may not have: impact serious or critical."""
    return [v for v in violations(page) if v["impact"] in BLOCKING]
