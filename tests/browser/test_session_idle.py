"""An idle session ends on the server: the next click lands on the login page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.live import Live
from tests.browser.pages import Shot, log_in, path_of

# What a browser or an outsider sees does not depend on the database engine: the SQLite pass
# runs these once (the PostgreSQL pass serves the same demo in test_audit_through_server).
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

IDLE_LIMIT_MINUTES = 15  # the default of VIGIE_SESSION_IDLE_MINUTES, which the server runs


def test_it_logs_out_an_idle_session(page: Page, live: Live, shot: Shot) -> None:
    doctor = live.installation.create_doctor("dr.distraite")
    log_in(page, live, doctor)
    session = next(c for c in page.context.cookies() if c["name"] == "sessionid")
    # Rather than wait 15 minutes, move the session's last activity back in time.
    live.installation.age_session(session["value"], (IDLE_LIMIT_MINUTES - 1) * 60)
    page.reload()
    assert path_of(page) == "/", "logged out before the idle limit"
    live.installation.age_session(session["value"], (IDLE_LIMIT_MINUTES + 1) * 60)
    page.reload()
    assert path_of(page) == "/accounts/login/", page.url
    expect(page.locator("#id_username")).to_be_visible()
    shot("logged-out")
    # The old cookie is dead on the server, not just forgotten by the browser.
    page.context.add_cookies(
        [{"name": "sessionid", "value": session["value"], "url": live.base_url}]
    )
    page.goto(live.base_url + "/")
    assert path_of(page) == "/accounts/login/"
