"""What a person does in the browser, step by step, shared by the browser tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Page

from tests.browser.live import Live, Login

Shot = Callable[[str], Path]


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def enter_password(page: Page, live: Live, user: Login, start: str = "/") -> None:
    """Open `start` as a stranger, land on the login page, type identifier and password."""
    page.goto(live.base_url + start)
    assert path_of(page) == "/accounts/login/", page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", user.password)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    # A refused form post (CSRF) would otherwise only show up as "still on the login page".
    assert "CSRF" not in page.content(), f"the login form was refused: {page.inner_text('body')}"


def enter_code(page: Page, code: str) -> None:
    page.fill("#totp-code", code)
    page.click("main form:has(#totp-code) button[type=submit]")
    page.wait_for_load_state()


def log_in(page: Page, live: Live, user: Login, shot: Shot | None = None) -> None:
    """Password, then the code the authenticator app shows; ends on the doctor's home page."""
    enter_password(page, live, user)
    assert path_of(page) == "/accounts/verify/", page.url
    if shot is not None:
        shot("second-factor")
    assert user.totp_secret is not None
    enter_code(page, live.installation.totp(user.totp_secret))
    assert path_of(page) == "/", page.url


def fetch_in_page(page: Page, url: str) -> dict[str, Any]:
    """GET `url` from the page's own context (its cookies): status, type, first bytes."""
    result: dict[str, Any] = page.evaluate(
        """async (url) => {
            const response = await fetch(url, {credentials: "same-origin"});
            const bytes = new Uint8Array(await response.arrayBuffer());
            return {
                status: response.status,
                type: response.headers.get("content-type"),
                head: String.fromCharCode(...bytes.slice(0, 5)),
                size: bytes.length,
                url: response.url,
            };
        }""",
        url,
    )
    return result
