from __future__ import annotations

import time

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from vigie.accounts.models import User
from vigie.accounts.otp import SECOND_FACTOR_AT
from vigie.accounts.reauth import require_fresh_second_factor
from vigie.accounts.testing import fresh_code, log_in, totp_device

pytestmark = pytest.mark.django_db


def _age_second_factor(client: Client, seconds: float) -> None:
    session = client.session
    session[SECOND_FACTOR_AT] = time.time() - seconds
    session.save()


@require_fresh_second_factor
def _sensitive(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


def test_it_runs_the_view_when_the_second_factor_is_fresh(rf: RequestFactory) -> None:
    request = rf.get("/sensitive/")
    request.session = {SECOND_FACTOR_AT: time.time() - 10}  # type: ignore[assignment]
    assert _sensitive(request).content == b"done"


def test_it_asks_to_reauthenticate_when_the_second_factor_is_old(rf: RequestFactory) -> None:
    request = rf.get("/sensitive/?x=1")
    request.session = {SECOND_FACTOR_AT: time.time() - 301}  # type: ignore[assignment]
    response = _sensitive(request)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/reauth/?next=%2Fsensitive%2F%3Fx%3D1"


def test_it_asks_to_reauthenticate_when_never_proved(rf: RequestFactory) -> None:
    request = rf.post("/sensitive/")
    request.session = {}  # type: ignore[assignment]
    assert _sensitive(request)["Location"] == "/accounts/reauth/?next=%2F"


def test_it_reauthenticates_and_returns(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    _age_second_factor(client, 600)
    page = client.get("/accounts/reauth/?next=/accounts/recovery-codes/")
    assert page.status_code == 200
    response = client.post(
        "/accounts/reauth/",
        {"code": fresh_code(totp_device(doctor)), "next": "/accounts/recovery-codes/"},
    )
    assert response["Location"] == "/accounts/recovery-codes/"
    assert time.time() - client.session[SECOND_FACTOR_AT] < 5


def test_reauth_does_not_redirect_off_site(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    response = client.post(
        "/accounts/reauth/",
        {"code": fresh_code(totp_device(doctor)), "next": "//evil.example/"},
    )
    assert response["Location"] == "/"


def test_replayed_code_does_not_reauthenticate(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    code = fresh_code(totp_device(doctor))
    client.post("/accounts/reauth/", {"code": code})
    _age_second_factor(client, 600)
    response = client.post("/accounts/reauth/", {"code": code})
    assert response.status_code == 200
    assert time.time() - client.session[SECOND_FACTOR_AT] >= 600


def test_repeated_wrong_reauth_codes_lock_out_and_log_out(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    # Five wrong codes are checked; the sixth is refused without being looked at.
    statuses = [client.post("/accounts/reauth/", {"code": "000000"}).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert "_auth_user_id" not in client.session


def test_the_admin_needs_a_fresh_second_factor(client: Client, admin_user: User) -> None:
    log_in(client, admin_user)
    assert client.get("/admin/").status_code == 200
    _age_second_factor(client, 301)
    response = client.get("/admin/accounts/user/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/reauth/?next=%2Fadmin%2Faccounts%2Fuser%2F"
    client.post(
        "/accounts/reauth/",
        {"code": fresh_code(totp_device(admin_user)), "next": "/admin/accounts/user/"},
    )
    assert client.get("/admin/accounts/user/").status_code == 200


def test_anonymous_visitor_cannot_reach_reauth(client: Client) -> None:
    assert client.get("/accounts/reauth/")["Location"].startswith("/accounts/login/")
