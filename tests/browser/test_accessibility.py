"""axe-core over the doctor's pages in real Chromium: no serious or critical violation.

Each page is checked as it is served, with its real Content-Security-Policy (tests/browser/axe).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.axe import serious_violations
from tests.browser.live import Live
from tests.browser.pages import Shot, log_in, path_of

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def test_it_finds_no_serious_accessibility_violation_on_the_doctors_pages(
    page: Page, live: Live, shot: Shot
) -> None:
    page.goto(live.base_url + "/accounts/login/")
    found = {"login": serious_violations(page)}
    log_in(page, live, live.installation.login("doctor", 1))
    found["home"] = serious_violations(page)
    page.click("table.listing a[href^='/patients/']")
    page.wait_for_load_state()
    assert path_of(page).startswith("/patients/")
    found["patient"] = serious_violations(page)
    page.locator("table.timeline a[href^='/documents/']").first.click()
    page.wait_for_load_state()
    assert path_of(page).startswith("/documents/")
    found["viewer"] = serious_violations(page)
    shot("viewer")
    assert {name: v for name, v in found.items() if v} == {}
