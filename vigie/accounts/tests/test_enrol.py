from __future__ import annotations

import re
from base64 import b32decode

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts.models import SealedTOTPDevice, User
from vigie.accounts.otp import recovery_code_hash
from vigie.accounts.testing import PASSWORD, fresh_code, log_in_password_only, totp_device
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _start(client: Client) -> str:
    client.post("/accounts/login/", {"username": "dr.new", "password": PASSWORD})
    return client.get("/accounts/enrol/").content.decode()


def _secret(html: str) -> bytes:
    match = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', html)
    assert match, "the key is shown as text for people who cannot scan"
    return b32decode(match.group(1).replace(" ", ""))


def _code(key: bytes) -> str:
    return f"{TOTP(key).token():06d}"


def test_it_shows_a_qr_code_and_the_key_without_script_or_style(
    client: Client, newcomer: User
) -> None:
    html = _start(client)
    assert "<svg" in html
    assert "<script" not in html
    assert "style=" not in html
    assert 'autocomplete="one-time-code"' in html
    assert 'inputmode="numeric"' in html
    device = SealedTOTPDevice.objects.get(user=newcomer)
    assert device.confirmed is False
    assert _secret(html) == device.bin_key
    # The table itself never holds the seed (it is sealed under the keyring).
    assert TOTPDevice.objects.get(user=newcomer).key != device.bin_key.hex()


def test_it_keeps_the_same_key_when_the_page_is_reloaded(client: Client, newcomer: User) -> None:
    first = _secret(_start(client))
    second = _secret(client.get("/accounts/enrol/").content.decode())
    assert first == second


def test_it_enrols_and_shows_ten_recovery_codes_once(client: Client, newcomer: User) -> None:
    key = _secret(_start(client))
    response = client.post("/accounts/enrol/", {"code": _code(key)})
    assert response["Location"] == "/accounts/recovery-codes/"
    html = client.get("/accounts/recovery-codes/").content.decode()
    shown = re.findall(r"<li><code>([a-z2-7]+)</code></li>", html)
    assert len(shown) == 10
    stored = set(StaticToken.objects.filter(device__user=newcomer).values_list("token", flat=True))
    # Stored as keyed hashes, never as the codes themselves.
    assert {recovery_code_hash(code) for code in shown} == stored
    assert not set(shown) & stored
    # Shown once: a reload (or someone at the same browser later) does not see them.
    again = client.get("/accounts/recovery-codes/").content.decode()
    assert not any(code in again for code in shown)
    assert TOTPDevice.objects.get(user=newcomer).confirmed is True
    assert AuditEvent.objects.filter(action="mfa.enrolled").count() == 1
    # Enrolment proved the second factor: the user is fully logged in.
    assert client.get("/accounts/login/")["Location"] == "/"


def test_it_refuses_a_wrong_enrolment_code(client: Client, newcomer: User) -> None:
    _start(client)
    response = client.post("/accounts/enrol/", {"code": "000000"})
    assert response.status_code == 200
    assert TOTPDevice.objects.get(user=newcomer).confirmed is False
    assert AuditEvent.objects.filter(action="mfa.failure").count() == 1


def test_enrolled_user_cannot_replace_the_authenticator_with_only_the_password(
    client: Client, doctor: User
) -> None:
    # An attacker holding the password must not enrol their own phone.
    log_in_password_only(client, doctor)
    response = client.get("/accounts/enrol/")
    assert response["Location"] == "/accounts/verify/"
    assert TOTPDevice.objects.filter(user=doctor).count() == 1


def test_it_renews_recovery_codes_only_with_a_fresh_second_factor(
    client: Client, doctor: User
) -> None:
    log_in_password_only(client, doctor)
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    response = client.post("/accounts/recovery-codes/new/")
    assert response["Location"] == "/accounts/recovery-codes/"
    html = client.get("/accounts/recovery-codes/").content.decode()
    assert len(re.findall(r"<li><code>", html)) == 10
