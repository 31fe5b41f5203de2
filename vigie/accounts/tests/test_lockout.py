from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

from vigie.accounts.models import User
from vigie.accounts.testing import PASSWORD, fresh_code, log_in_password_only, totp_device
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _fail(client: Client, username: str, ip: str = "198.51.100.7") -> int:
    response = client.post(
        "/accounts/login/", {"username": username, "password": "wrong guess"}, REMOTE_ADDR=ip
    )
    return response.status_code


def _login(client: Client, username: str, ip: str) -> int:
    response = client.post(
        "/accounts/login/", {"username": username, "password": PASSWORD}, REMOTE_ADDR=ip
    )
    return response.status_code


def test_it_locks_an_account_after_five_failures(client: Client, doctor: User) -> None:
    # From five different addresses: the per-account counter alone locks.
    statuses = [_fail(client, "dr.house", ip=f"203.0.113.{i}") for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert _login(client, "dr.house", "192.0.2.50") == 429
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="login.locked").exists()


def test_lockout_cannot_be_bypassed_by_changing_case(client: Client, doctor: User) -> None:
    spellings = ["DR.HOUSE", "Dr.House", " dr.house", "dr.house ", "ＤＲ.house"]
    for i, spelling in enumerate(spellings):
        _fail(client, spelling, ip=f"203.0.113.{i}")
    assert _login(client, "dr.house", "192.0.2.50") == 429
    assert _login(client, "Dr.House", "192.0.2.51") == 429


def test_it_locks_a_source_address_trying_many_accounts(
    client: Client, doctor: User, auditor: User
) -> None:
    # Password spraying: one address, a different identifier each time.
    for i in range(5):
        _fail(client, f"guess{i}", ip="198.51.100.9")
    assert _login(client, "dpo", "198.51.100.9") == 429
    # The same account from elsewhere is not punished for that address.
    assert _login(client, "dpo", "192.0.2.60") == 302


def test_lockout_page_reveals_nothing_about_the_account(client: Client, doctor: User) -> None:
    for i in range(5):
        _fail(client, "dr.house", ip=f"203.0.113.{i}")
        _fail(client, "dr.nobody", ip=f"203.0.114.{i}")
    existing = client.post(
        "/accounts/login/", {"username": "dr.house", "password": PASSWORD}, REMOTE_ADDR="192.0.2.1"
    )
    unknown = client.post(
        "/accounts/login/", {"username": "dr.nobody", "password": "x"}, REMOTE_ADDR="192.0.2.2"
    )
    assert existing.status_code == unknown.status_code == 429

    def scrub(html: bytes) -> str:
        return re.sub(r'value="[^"]*"', 'value=""', html.decode())

    assert scrub(existing.content) == scrub(unknown.content)
    assert "house" not in scrub(existing.content).lower()


def test_failed_codes_count_toward_lockout(client: Client, doctor: User) -> None:
    log_in_password_only(client, doctor)
    statuses = [client.post("/accounts/verify/", {"code": "000000"}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    # The half-open session is gone, and even the right code cannot be tried any more.
    assert "_auth_user_id" not in client.session
    assert _login(client, "dr.house", "192.0.2.77") == 429
    assert not AccessAttempt.objects.filter(post_data__contains="000000").exists()


def test_a_correct_code_is_refused_while_locked_out(client: Client, doctor: User) -> None:
    log_in_password_only(client, doctor)
    for i in range(5):
        _fail(Client(), "dr.house", ip=f"203.0.113.{i}")
    response = client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_mixed_password_and_code_failures_share_one_counter(client: Client, doctor: User) -> None:
    for i in range(3):
        _fail(client, "dr.house", ip=f"203.0.113.{i}")
    log_in_password_only(client, doctor)
    assert client.post("/accounts/verify/", {"code": "000000"}).status_code == 200
    assert client.post("/accounts/verify/", {"code": "000000"}).status_code == 429


def test_it_unlocks_after_the_cool_off(client: Client, doctor: User) -> None:
    for i in range(5):
        _fail(client, "dr.house", ip=f"203.0.113.{i}")
    assert _login(client, "dr.house", "192.0.2.50") == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login(client, "dr.house", "192.0.2.50") == 302


def test_a_full_login_forgives_earlier_failures(client: Client, doctor: User) -> None:
    for i in range(4):
        _fail(client, "dr.house", ip=f"203.0.113.{i}")
    log_in_password_only(client, doctor)
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert not AccessAttempt.objects.filter(username="dr.house").exists()


def test_the_password_alone_does_not_forgive_failed_codes(client: Client, doctor: User) -> None:
    log_in_password_only(client, doctor)
    for _ in range(4):
        client.post("/accounts/verify/", {"code": "000000"})
    client.post("/accounts/logout/")
    log_in_password_only(client, doctor)
    assert client.post("/accounts/verify/", {"code": "000000"}).status_code == 429
