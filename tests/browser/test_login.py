"""Logging in with a real browser: first login with enrolment, everyday login with a code,
a wrong code, and the lockout after too many of them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.live import Live
from tests.browser.pages import Shot, enter_code, enter_password, log_in, path_of

# What a browser or an outsider sees does not depend on the database engine: the SQLite pass
# runs these once (the PostgreSQL pass serves the same demo in test_audit_through_server).
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


@pytest.fixture
def forget_failures(live: Live) -> Iterator[None]:
    # Lockout is per account *and* per source address: every test here comes from
    # 127.0.0.1, so failures left behind would lock out the tests that follow.
    yield
    live.installation.reset_lockouts()


def test_it_logs_a_doctor_in_with_password_and_code(page: Page, live: Live, shot: Shot) -> None:
    doctor = live.installation.login("doctor", 0)
    page.goto(live.base_url + "/")
    assert path_of(page) == "/accounts/login/"
    shot("login")
    log_in(page, live, doctor, shot)
    expect(page.locator("table.listing")).to_be_visible()
    expect(page.locator("a[href^='/patients/']").first).to_be_visible()
    shot("home")


def test_it_enrols_a_new_doctor_at_first_login(page: Page, live: Live, shot: Shot) -> None:
    newcomer = live.installation.create_doctor("dr.nouvelle", totp=False)
    enter_password(page, live, newcomer)
    assert path_of(page) == "/accounts/enrol/", page.url
    expect(page.locator("figure.qr svg")).to_be_visible()
    shot("enrol")
    # "Scanning": the key as printed under the QR code, typed into an authenticator app.
    secret = re.sub(r"\s+", "", page.inner_text("code.secret"))
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    page.fill("#enrol-code", live.installation.totp(secret))
    page.click("main form:has(#enrol-code) button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == "/accounts/recovery-codes/", page.url
    codes = page.locator("main ul.codes li")
    expect(codes).to_have_count(10)
    assert len(set(codes.all_inner_texts())) == 10
    shot("recovery-codes")
    page.click("main a.button")
    page.wait_for_load_state()
    assert path_of(page) == "/"
    # Shown once only: coming back shows no codes.
    page.goto(live.base_url + "/accounts/recovery-codes/")
    expect(page.locator("main ul.codes li")).to_have_count(0)


def test_it_refuses_a_wrong_code_then_locks_the_account(
    page: Page, live: Live, shot: Shot, forget_failures: None
) -> None:
    victim = live.installation.create_doctor("dr.cible")
    assert victim.totp_secret is not None
    enter_password(page, live, victim)
    assert path_of(page) == "/accounts/verify/"
    enter_code(page, "000000")
    # Still on the second-factor page, with an error and no way further.
    assert path_of(page) == "/accounts/verify/"
    expect(page.locator("main [role=alert]")).to_be_visible()
    shot("wrong-code")
    locked = False
    for _ in range(10):
        enter_code(page, "000000")
        if page.locator("#totp-code").count() == 0:
            locked = True
            break
    assert locked, "still asked for a code after 11 wrong ones"
    expect(page.locator("main a[href='/accounts/login/']")).to_be_visible()
    shot("locked")
    # Even the right password and the right code do not open a locked account now.
    page.context.clear_cookies()
    enter_password(page, live, victim)
    assert page.locator("#totp-code").count() == 0
    assert path_of(page) != "/"
    page.goto(live.base_url + "/")
    assert path_of(page) == "/accounts/login/"
