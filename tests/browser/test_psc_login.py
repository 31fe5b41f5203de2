"""Signing in with Pro Santé Connect in real Chromium, through the test provider process.

The provider runs on "localhost" and Vigie on 127.0.0.1: two sites, as PSC and a clinic are,
so the browser leaves Vigie's SameSite=Strict session cookie out of the redirect back from
PSC, and the sign-in must still work (the callback moves on same-site).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.live import Live
from tests.browser.pages import Shot, path_of
from tests.psc.served import PscServer, serve_with_psc

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

RPPS = "10009876543"


@pytest.fixture(scope="module")
def psc(live: Live) -> Iterator[PscServer]:
    """A `vigie serve` of the shared installation with PSC configured, and its provider."""
    with serve_with_psc(live.installation) as served:
        yield served


@pytest.fixture(scope="module")
def psc_doctor(live: Live) -> str:
    login = live.installation.create_doctor("dr.carte", totp=False)
    live.installation.shell(
        "from vigie.accounts.models import User\n"
        f"User.objects.filter(username={login.username!r}).update(rpps={RPPS!r})"
    )
    return login.username


def _sign_in_at_psc(page: Page, psc: PscServer, national_id: str, shot: Shot) -> None:
    page.goto(psc.server.base_url + "/")
    assert path_of(page) == "/accounts/login/"
    shot("login")
    page.click("#psc-button")
    page.wait_for_load_state()
    assert page.url.startswith(psc.provider.issuer), page.url
    shot("provider")
    page.fill("#national_id", national_id)
    page.click("#psc-sign-in")
    page.wait_for_load_state()


def test_it_signs_a_doctor_in_through_psc(
    page: Page, psc: PscServer, psc_doctor: str, shot: Shot
) -> None:
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))
    _sign_in_at_psc(page, psc, "8" + RPPS, shot)
    expect(page.locator("main form[role=search], main search, main h1").first).to_be_visible()
    assert path_of(page) == "/", page.url
    shot("home")
    # The strict session cookie was left out coming back from the other site, and the
    # callback moved on same-site to get it.
    cookies = {c["name"]: c for c in page.context.cookies(psc.server.base_url)}
    assert cookies["sessionid"]["sameSite"] == "Strict"
    callbacks = [url for url in visited if "/accounts/psc/callback/" in url]
    assert len(callbacks) == 2
    assert "continue=1" in callbacks[1]
    # Signed in, second factor included (no code was asked): a page behind it opens.
    page.goto(psc.server.base_url + "/accounts/password/")
    assert path_of(page) == "/accounts/password/"


def test_an_unknown_rpps_gets_a_clear_refusal(page: Page, psc: PscServer, shot: Shot) -> None:
    _sign_in_at_psc(page, psc, "810000000000", shot)
    expect(page.locator("#psc-refused")).to_contain_text("RPPS")
    shot("refused")
    page.goto(psc.server.base_url + "/")
    assert path_of(page) == "/accounts/login/"
