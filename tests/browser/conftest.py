"""Browser tests: Debian's headless Chromium (never Playwright's own download) against `live`.

Each test gets a fresh browser context (its own cookies and storage, like a new profile) and a
`shot(name)` helper saving test-artifacts/screenshots/<test>-<name>.png; a failing test also
leaves test-artifacts/screenshots/<test>.png of the page as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.browser.live import ARTIFACTS, live_fixture  # noqa: F401 - the shared fixture

SCREENSHOTS = ARTIFACTS / "screenshots"

Shot = Callable[[str], Path]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keeps each phase's report on the test item, so `page` knows at teardown if it failed.
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop in this thread, which Django's
    # async-safety checks would trip over in the ORM tests that run after the browser ones.
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    ctx = chromium.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{_safe(request.node.name)}.png", full_page=True)


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Shot:
    def take(step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{_safe(request.node.name)}-{_safe(step)}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take
