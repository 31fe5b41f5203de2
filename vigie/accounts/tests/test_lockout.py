from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from vigie.accounts import lockout, otp
from vigie.accounts.models import LoginThrottle, User
from vigie.accounts.otp import verify_code
from vigie.accounts.testing import PASSWORD, fresh_code, log_in_password_only, totp_device
from vigie.alerts.models import Alert, Audience
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move lockout's clock forward by `seconds` (no test sleeps)."""
    start = timezone.now()
    offset = [0.0]

    def moved() -> datetime:
        return start + timedelta(seconds=offset[0])

    # raising=False: the same test runs against older code (see the report) without it.
    monkeypatch.setattr(lockout, "now", moved, raising=False)

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


def _post(client: Client, username: str, password: str, ip: str) -> Any:
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def _fail(client: Client, username: str, ip: str = "198.51.100.7") -> int:
    return int(_post(client, username, "wrong guess", ip).status_code)


def _login(client: Client, username: str, ip: str) -> int:
    return int(_post(client, username, PASSWORD, ip).status_code)


def _verified_passwords(username: str) -> int:
    return AuditEvent.objects.filter(action="login.failure", extra__username=username).count()


# --- per source address: a hard lock ---


def test_it_locks_a_source_address_trying_many_accounts(
    client: Client, doctor: User, auditor: User, clock: Callable[[float], None]
) -> None:
    # Password spraying: one address, a different identifier each time.
    statuses = [_fail(client, f"guess{i}", ip="198.51.100.9") for i in range(6)]
    assert statuses == [200, 200, 200, 200, 200, 429]
    assert _login(client, "dpo", "198.51.100.9") == 429
    assert AuditEvent.objects.filter(action="login.locked").exists()
    # The same account from elsewhere is not punished for that address.
    assert _login(client, "dpo", "192.0.2.60") == 302
    # The window ends: the address may try again.
    clock(15 * 60 + 1)
    assert _login(client, "dpo", "198.51.100.9") == 302


def test_successful_logins_do_not_use_up_a_shared_address(
    doctor: User, auditor: User, admin_user: User
) -> None:
    # A clinic behind one NAT address: many people log in, only failures count.
    for i in range(4):
        _fail(Client(), f"guess{i}", ip="192.0.2.9")
    for _ in range(10):
        assert _login(Client(), "dr.house", "192.0.2.9") == 302
    assert _fail(Client(), "it.admin", ip="192.0.2.9") == 200
    assert _login(Client(), "dr.house", "192.0.2.9") == 429


def test_lockout_page_reveals_nothing_about_the_account(client: Client, doctor: User) -> None:
    for i in range(6):
        _fail(client, f"guess{i}", ip="203.0.113.1")
    existing = _post(client, "dr.house", PASSWORD, "203.0.113.1")
    unknown = _post(client, "dr.nobody", "x", "203.0.113.1")
    assert existing.status_code == unknown.status_code == 429

    def scrub(html: bytes) -> str:
        return re.sub(r'value="[^"]*"', 'value=""', html.decode())

    assert scrub(existing.content) == scrub(unknown.content)
    assert "house" not in scrub(existing.content).lower()


# --- per account, passwords: a progressive delay, never a lock ---


def test_attack_outsider_locks_a_doctor_out_by_failing_on_their_identifier(
    doctor: User, clock: Callable[[float], None]
) -> None:
    # Twenty wrong passwords on the doctor's identifier from twenty addresses (a botnet):
    # under the old hard lock the doctor was kept out for 15 minutes.
    statuses = [_fail(Client(), "dr.house", ip=f"203.0.113.{i}") for i in range(20)]
    assert statuses[:3] == [200, 200, 200]
    assert set(statuses[3:]) == {429}
    refused = _post(Client(), "dr.house", PASSWORD, "192.0.2.50")
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 120
    assert f"attendez {wait} seconde" in refused.content.decode()  # French first
    # The doctor, from their own address, waits what they were told and is in.
    clock(wait)
    assert _login(Client(), "dr.house", "192.0.2.50") == 302


def test_attack_outsider_keeps_a_doctor_out_with_sustained_failures(
    doctor: User, clock: Callable[[float], None]
) -> None:
    # The outsider goes on from many addresses, trying again as soon as allowed: the doctor
    # is never told to wait more than the cap (2 minutes), never 15 minutes.
    for i in range(40):
        answer = _post(Client(), "dr.house", "wrong guess", f"203.0.113.{i}")
        while answer.status_code == 429:
            clock(int(answer["Retry-After"]))
            answer = _post(Client(), "dr.house", "wrong guess", f"203.0.114.{i}")
    refused = _post(Client(), "dr.house", PASSWORD, "192.0.2.50")
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert wait <= 120
    clock(wait)
    assert _login(Client(), "dr.house", "192.0.2.50") == 302


def test_the_delay_doubles_up_to_its_cap(doctor: User, clock: Callable[[float], None]) -> None:
    # The wait after each allowed attempt, as the refusals announce it.
    waits = []
    assert _fail(Client(), "dr.house", ip="203.0.113.1") == 200
    for i in range(11):
        answer = _post(Client(), "dr.house", "wrong guess", f"203.0.113.{i}")
        if answer.status_code == 429:
            waits.append(int(answer["Retry-After"]))
            clock(waits[-1] - 1)
            assert _fail(Client(), "dr.house", ip=f"203.0.114.{i}") == 429  # not a second early
            clock(1)
            assert _fail(Client(), "dr.house", ip=f"203.0.115.{i}") == 200
        else:
            waits.append(0)
    assert waits == [0, 0, 5, 10, 20, 40, 80, 120, 120, 120, 120]
    # Refused attempts were never checked: only the twelve allowed ones were.
    assert _verified_passwords("dr.house") == 12


def test_the_account_delay_is_forgotten_after_a_quiet_cool_off(
    doctor: User, clock: Callable[[float], None]
) -> None:
    for i in range(3):
        _fail(Client(), "dr.house", ip=f"203.0.113.{i}")
    assert _fail(Client(), "dr.house", ip="203.0.113.9") == 429
    clock(15 * 60)
    assert [_fail(Client(), "dr.house", ip=f"203.0.114.{i}") for i in range(3)] == [200] * 3


def test_the_delay_cannot_be_bypassed_by_changing_case(doctor: User) -> None:
    spellings = ["DR.HOUSE", "Dr.House", " dr.house"]
    for i, spelling in enumerate(spellings):
        assert _fail(Client(), spelling, ip=f"203.0.113.{i}") == 200
    assert _login(Client(), "dr.house ", "192.0.2.50") == 429
    assert _login(Client(), "ＤＲ.house", "192.0.2.51") == 429


def test_the_delay_looks_the_same_for_an_unknown_identifier(doctor: User) -> None:
    for i in range(3):
        _fail(Client(), "dr.house", ip=f"203.0.113.{i}")
        _fail(Client(), "dr.nobody", ip=f"203.0.114.{i}")
    existing = _post(Client(), "dr.house", PASSWORD, "192.0.2.1")
    unknown = _post(Client(), "dr.nobody", "x", "192.0.2.2")
    assert existing.status_code == unknown.status_code == 429
    assert existing["Retry-After"] == unknown["Retry-After"]


def test_sustained_attempts_raise_one_alert_for_it(
    doctor: User, clock: Callable[[float], None]
) -> None:
    for i in range(12):
        answer = _post(Client(), "dr.house", "wrong guess", f"203.0.113.{i}")
        clock(float(answer.get("Retry-After", 120)))
    alerts = Alert.objects.filter(kind=lockout.SUSTAINED_ALERT)
    assert alerts.count() == 1
    alert = alerts.get()
    assert alert.audience == Audience.ADMIN
    assert alert.details["username"] == "dr.house"
    assert alert.count >= 2  # folded while it goes on
    assert AuditEvent.objects.filter(action="login.sustained_failures").count() == 1


def test_a_full_login_forgives_earlier_failures(client: Client, doctor: User) -> None:
    for i in range(2):
        _fail(Client(), "dr.house", ip=f"203.0.113.{i}")
    log_in_password_only(client, doctor)
    client.post("/accounts/verify/", {"code": "000000"})
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    rows = LoginThrottle.objects.filter(key="dr.house")
    assert {row.scope: row.attempts for row in rows} == {"account": 0, "second_factor": 0}


# --- per account, second-factor codes: a hard lock ---


def test_failed_codes_lock_the_second_factor(client: Client, doctor: User) -> None:
    log_in_password_only(client, doctor)
    statuses = [client.post("/accounts/verify/", {"code": "000000"}).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 200, 200, 429]
    # The half-open session is gone, and even the right code cannot be tried any more.
    assert "_auth_user_id" not in client.session
    # Nor from elsewhere (this address is locked too: codes count against it as well).
    other = Client()
    assert _login(other, "dr.house", "192.0.2.80") == 302
    response = other.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert response.status_code == 429
    assert int(response["Retry-After"]) <= 15 * 60
    assert "_auth_user_id" not in other.session
    assert AuditEvent.objects.filter(action="mfa.failure").count() == 5


def test_the_second_factor_unlocks_after_the_cool_off(
    client: Client, doctor: User, clock: Callable[[float], None]
) -> None:
    log_in_password_only(client, doctor)
    for _ in range(5):
        client.post("/accounts/verify/", {"code": "000000"})
    clock(15 * 60 + 1)
    log_in_password_only(client, doctor)
    response = client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    assert response.status_code == 302


def test_the_password_alone_does_not_forgive_failed_codes(client: Client, doctor: User) -> None:
    log_in_password_only(client, doctor)
    for _ in range(5):
        client.post("/accounts/verify/", {"code": "000000"})
    client.post("/accounts/logout/")
    assert _login(client, "dr.house", "192.0.2.80") == 302
    assert client.post("/accounts/verify/", {"code": "000000"}).status_code == 429


def test_right_codes_do_not_use_up_the_limit(doctor: User) -> None:
    # Re-authentication several times in a quarter of an hour is normal work: a right code
    # gives back the attempt it reserved. (Each code works once: reset the replay mark.)
    device = totp_device(doctor)
    for _ in range(8):
        device.refresh_from_db()
        device.last_t = -1
        device.save(update_fields=["last_t"])
        assert verify_code(doctor, fresh_code(device))
    assert LoginThrottle.objects.get(scope="second_factor", key="dr.house").attempts == 0


def test_a_locked_code_check_is_not_even_attempted(doctor: User, monkeypatch: Any) -> None:
    for _ in range(5):
        assert not otp.verify_code(doctor, "000000")
    checked: list[str] = []
    monkeypatch.setattr(otp, "_match_totp", lambda user, code: checked.append(code))
    assert not otp.verify_code(doctor, fresh_code(totp_device(doctor)))
    assert checked == []


def test_the_lockout_reset_command_clears_every_counter(doctor: User) -> None:
    for _ in range(6):
        _fail(Client(), "dr.house", ip="198.51.100.9")
    call_command("lockout", "reset")
    assert not LoginThrottle.objects.exists()
    assert _login(Client(), "dr.house", "198.51.100.9") == 302
    assert AuditEvent.objects.filter(action="login.lockout_reset").exists()
    assert check_password(PASSWORD, User.objects.get(username="dr.house").password)
