from __future__ import annotations

import re

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from pytest_django.fixtures import Settings as SettingsWrapper

from vigie.accounts import otp
from vigie.accounts.models import User
from vigie.accounts.testing import (
    PASSWORD,
    code_at_step,
    current_codes,
    current_step,
    fresh_code,
    log_in_password_only,
    totp_device,
)
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _recovery_codes(user: User) -> list[str]:
    return otp.new_recovery_codes(user)


def _verified(client: Client) -> bool:
    return client.get("/accounts/login/").get("Location") == "/"


def test_replayed_totp_code_is_refused(client: Client, doctor: User) -> None:
    code = fresh_code(totp_device(doctor))
    log_in_password_only(client, doctor)
    assert client.post("/accounts/verify/", {"code": code}).status_code == 302
    client.post("/accounts/logout/")

    # Someone who saw the code (shoulder, phishing proxy, log) tries it again at once.
    attacker = Client()
    log_in_password_only(attacker, doctor)
    response = attacker.post("/accounts/verify/", {"code": code}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "This code is not valid" in response.content.decode()
    assert not _verified(attacker)


def test_an_older_code_is_refused_after_a_newer_one(doctor: User) -> None:
    # Codes of the previous and next 30 s windows are accepted (clock skew), but never one
    # older than the last accepted code: an intercepted older code stays useless.
    device = totp_device(doctor)
    now = current_step(device)
    assert otp.verify_code(doctor, code_at_step(device, now + 1)) is True
    assert otp.verify_code(doctor, code_at_step(device, now)) is False


def test_recovery_code_is_accepted_once_only(client: Client, doctor: User) -> None:
    codes = _recovery_codes(doctor)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    log_in_password_only(client, doctor)
    response = client.post("/accounts/verify/", {"kind": "recovery", "code": codes[0].upper()})
    assert response.status_code == 302
    assert _verified(client)
    assert "mfa.recovery_code_used" in AuditEvent.objects.values_list("action", flat=True)
    assert StaticToken.objects.filter(device__user=doctor).count() == 9
    client.post("/accounts/logout/")

    log_in_password_only(client, doctor)
    response = client.post("/accounts/verify/", {"kind": "recovery", "code": codes[0]})
    assert response.status_code == 200
    assert not _verified(client)


def test_it_refuses_a_wrong_code_and_records_it(client: Client, doctor: User) -> None:
    log_in_password_only(client, doctor)
    response = client.post("/accounts/verify/", {"code": "000000"})
    assert response.status_code == 200
    assert not _verified(client)
    failure = AuditEvent.objects.get(action="mfa.failure")
    assert failure.outcome == "failure"


def test_it_sends_an_unenrolled_user_to_enrolment(client: Client, newcomer: User) -> None:
    response = client.post("/accounts/login/", {"username": "dr.new", "password": PASSWORD})
    assert response["Location"] == "/accounts/enrol/"
    assert client.get("/accounts/verify/")["Location"] == "/accounts/enrol/"


def test_anonymous_visitor_cannot_reach_the_second_factor_page(client: Client) -> None:
    response = client.get("/accounts/verify/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("mode", ["production", "test"])
def test_it_never_shows_codes_outside_demo_mode(
    client: Client, doctor: User, auditor: User, settings: SettingsWrapper, mode: str
) -> None:
    settings.VIGIE_MODE = mode
    log_in_password_only(client, doctor)
    html = client.get("/accounts/verify/").content.decode()
    shown = set(re.findall(r"(?<!\d)\d{6}(?!\d)", html))
    for user in (doctor, auditor):
        assert not (current_codes(totp_device(user)) & shown)
    assert "demo-codes" not in html


def test_it_shows_the_current_code_in_demo_mode(
    client: Client, doctor: User, settings: SettingsWrapper
) -> None:
    settings.VIGIE_MODE = "demo"
    log_in_password_only(client, doctor)
    html = client.get("/accounts/verify/").content.decode()
    assert "demo-codes" in html
    shown = set(re.findall(r"(?<!\d)\d{6}(?!\d)", html))
    assert current_codes(totp_device(doctor)) & shown


def test_verify_code_accepts_totp_and_recovery_codes(doctor: User) -> None:
    codes = _recovery_codes(doctor)
    assert otp.verify_code(doctor, fresh_code(totp_device(doctor))) is True
    assert otp.verify_code(doctor, codes[1]) is True
    assert otp.verify_code(doctor, codes[1]) is False
    assert otp.verify_code(doctor, "") is False
    assert otp.verify_code(doctor, "12345x") is False


def test_verify_code_ignores_spaces_and_dashes(doctor: User) -> None:
    code = fresh_code(totp_device(doctor))
    assert otp.verify_code(doctor, f"{code[:3]} {code[3:]}") is True
    recovery = _recovery_codes(doctor)[0]
    assert otp.verify_code(doctor, f"{recovery[:5]}-{recovery[5:]}") is True


def test_a_code_of_one_user_does_not_work_for_another(doctor: User, auditor: User) -> None:
    code = fresh_code(totp_device(auditor))
    assert code not in current_codes(totp_device(doctor)) or pytest.skip("codes collide")
    assert otp.verify_code(doctor, code) is False
