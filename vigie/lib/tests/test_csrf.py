from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def _post_login(client: Client, **headers: str) -> int:
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/accounts/login/",
        {"username": "nobody", "password": "wrong-password-123", "csrfmiddlewaretoken": token},
        headers=headers,
    )
    return response.status_code


def test_a_same_origin_form_post_under_no_referrer_is_accepted() -> None:
    # What Chromium sends for our own login form when the page says no-referrer.
    status = _post_login(
        Client(enforce_csrf_checks=True), origin="null", sec_fetch_site="same-origin"
    )
    assert status != 403


def test_a_cross_site_post_with_a_null_origin_is_refused() -> None:
    # A sandboxed iframe on an attacker's site also sends Origin: null — but cross-site.
    status = _post_login(
        Client(enforce_csrf_checks=True), origin="null", sec_fetch_site="cross-site"
    )
    assert status == 403


def test_a_null_origin_without_fetch_metadata_is_refused() -> None:
    status = _post_login(Client(enforce_csrf_checks=True), origin="null")
    assert status == 403


def test_a_post_from_another_origin_is_refused() -> None:
    status = _post_login(
        Client(enforce_csrf_checks=True), origin="https://evil.example", sec_fetch_site="cross-site"
    )
    assert status == 403
