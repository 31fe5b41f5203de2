from __future__ import annotations

import re

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from vigie.accounts.models import User
from vigie.accounts.testing import PASSWORD, fresh_code, totp_device
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_it_shows_an_accessible_login_form(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'autocomplete="username"' in html
    assert 'autocomplete="current-password"' in html
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    # At most the passkeys' own static file: nothing inline (the CSP would refuse it).
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert set(scripts) <= {(' src="/static/vigie/passkeys.js" defer', "")}
    assert html.count("<script") == len(scripts)
    assert "style=" not in html


def test_it_asks_for_the_second_factor_after_the_password(client: Client, doctor: User) -> None:
    response = client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/verify/"
    # Password alone: authenticated, but not verified, so nothing else opens.
    assert client.session.get(DEVICE_ID_SESSION_KEY) is None
    assert client.get("/").status_code == 302
    assert _actions() == ["login.success"]


def test_it_logs_in_a_doctor_with_both_factors(client: Client, doctor: User) -> None:
    client.post("/accounts/login/", {"username": "Dr.House ", "password": PASSWORD})
    code = fresh_code(totp_device(doctor))
    response = client.post("/accounts/verify/", {"kind": "totp", "code": code})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session.get(DEVICE_ID_SESSION_KEY)
    assert _actions() == ["login.success", "mfa.success"]


def test_it_returns_to_the_requested_page_after_login(client: Client, doctor: User) -> None:
    response = client.get("/accounts/recovery-codes/")
    assert response["Location"] == "/accounts/login/?next=%2Faccounts%2Frecovery-codes%2F"
    client.post(
        "/accounts/login/",
        {"username": "dr.house", "password": PASSWORD, "next": "/accounts/recovery-codes/"},
    )
    response = client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert response["Location"] == "/accounts/recovery-codes/"


def test_login_next_cannot_redirect_to_another_site(client: Client, doctor: User) -> None:
    client.post(
        "/accounts/login/",
        {"username": "dr.house", "password": PASSWORD, "next": "https://evil.example/x"},
    )
    response = client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert response["Location"] == "/"


def test_it_refuses_a_wrong_password_without_saying_which_part_is_wrong(
    client: Client, doctor: User
) -> None:
    # The message is asserted in English: ask for it (the portal speaks French by default).
    wrong = client.post(
        "/accounts/login/", {"username": "dr.house", "password": "nope"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    unknown = client.post(
        "/accounts/login/", {"username": "dr.nobody", "password": "nope"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert wrong.status_code == unknown.status_code == 200
    message = "The identifier or the password is incorrect."
    assert message in wrong.content.decode()
    assert message in unknown.content.decode()
    assert "_auth_user_id" not in client.session
    assert _actions() == ["login.failure", "login.failure"]


def test_it_refuses_an_inactive_account(client: Client, doctor: User) -> None:
    doctor.is_active = False
    doctor.save()
    response = client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_it_sends_a_logged_in_user_away_from_the_login_page(client: Client, doctor: User) -> None:
    client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    assert client.get("/accounts/login/")["Location"] == "/accounts/verify/"
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert client.get("/accounts/login/")["Location"] == "/"


@pytest.mark.parametrize("persona", ["doctor", "auditor", "admin_user"])
def test_it_lands_every_role_on_the_portal_home(
    client: Client, persona: str, request: pytest.FixtureRequest
) -> None:
    user: User = request.getfixturevalue(persona)
    client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    response = client.post("/accounts/verify/", {"code": fresh_code(totp_device(user))})
    assert response["Location"] == "/"


def test_it_lets_the_admin_into_the_admin_site(client: Client, admin_user: User) -> None:
    client.post("/accounts/login/", {"username": "it.admin", "password": PASSWORD})
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(admin_user))})
    assert client.get("/admin/").status_code == 200


def test_a_doctor_cannot_use_the_admin_site(client: Client, doctor: User) -> None:
    client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403


def test_the_admin_login_form_is_never_used(client: Client, admin_user: User) -> None:
    # Django's admin login knows no second factor: it must not be a way around it.
    response = client.post("/admin/login/", {"username": "it.admin", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session


def test_it_keeps_the_requested_page_across_a_failed_attempt(client: Client, doctor: User) -> None:
    response = client.post(
        "/accounts/login/", {"username": "dr.house", "password": "typo", "next": "/patients/"}
    )
    assert 'name="next" value="/patients/"' in response.content.decode()


def test_login_form_refuses_a_cross_site_post(doctor: User) -> None:
    # Login CSRF: another site must not log a doctor's browser into an attacker's account.
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
