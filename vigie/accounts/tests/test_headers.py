from __future__ import annotations

import pytest
from django.test import Client

from vigie.accounts.models import User
from vigie.accounts.testing import log_in

pytestmark = pytest.mark.django_db


def _assert_protective_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["X-Robots-Tag"] == "noindex, nofollow, noarchive"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


def test_it_protects_the_login_page(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    _assert_protective_headers(response)
    assert response.headers["X-Frame-Options"] == "DENY"


def test_it_protects_a_not_found_page(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    _assert_protective_headers(response)


def test_it_protects_robots_txt(client: Client) -> None:
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response.content == b"User-agent: *\nDisallow: /\n"
    _assert_protective_headers(response)


def test_it_protects_the_redirect_an_outsider_gets(client: Client) -> None:
    response = client.get("/anything")
    assert response.status_code == 302
    _assert_protective_headers(response)


def test_it_lets_static_assets_be_cached(client: Client) -> None:
    response = client.get("/static/vigie/vigie.css")
    assert response.headers["X-Robots-Tag"] == "noindex, nofollow, noarchive"
    assert response.headers.get("Cache-Control") != "no-store"
