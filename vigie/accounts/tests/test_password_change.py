"""A signed-in user changes their own password (issue 17): current password + a fresh
second factor, Django's validators, Argon2id, every other session ended, audited."""

from __future__ import annotations

import time

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from vigie.accounts import events
from vigie.accounts.models import User
from vigie.accounts.otp import SECOND_FACTOR_AT
from vigie.accounts.testing import PASSWORD, log_in
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

URL = "/accounts/password/"
NEW = "un nouveau mot de passe assez long 7"


def _stale_second_factor(client: Client) -> None:
    session = client.session
    session[SECOND_FACTOR_AT] = time.time() - 3600
    session.save()


def _change(client: Client, current: str = PASSWORD, new: str = NEW, again: str | None = None):
    return client.post(
        URL,
        {"current_password": current, "password": new, "password_again": again or new},
    )


def _password_is(user: User, password: str) -> bool:
    user.refresh_from_db()
    return user.check_password(password)


def test_attack_stolen_session_cannot_change_the_password_without_the_current_password_and_second_factor(
    doctor: User,
) -> None:
    thief = Client()
    log_in(thief, doctor)
    # A copied cookie, some time later: the second factor is no longer fresh.
    _stale_second_factor(thief)
    for response in (thief.get(URL), _change(thief)):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/reauth/")
    assert _password_is(doctor, PASSWORD)
    # Even with a fresh second factor (the doctor had just re-authenticated), the current
    # password is still needed.
    log_in(thief, doctor)
    response = _change(thief, current="a guess")
    assert response.status_code == 200
    assert "current_password" in response.context["form"].errors
    assert _password_is(doctor, PASSWORD)
    refused = AuditEvent.objects.get(action=events.PASSWORD_CHANGE_REFUSED)
    assert (refused.actor_username, refused.outcome, refused.reason) == (
        doctor.username,
        "failure",
        "wrong_current_password",
    )
    assert not AuditEvent.objects.filter(action=events.PASSWORD_CHANGED).exists()


def test_attack_other_sessions_die_after_a_password_change(doctor: User) -> None:
    mine, stolen, other_device = Client(), Client(), Client()
    for client in (mine, stolen, other_device):
        log_in(client, doctor)
    assert stolen.get("/").status_code == 200

    response = _change(mine)

    assert response.status_code == 302
    for client in (stolen, other_device):
        after = client.get("/")
        assert after.status_code == 302
        assert after["Location"].startswith("/accounts/login/")
    # This browser stays signed in, under a new session id, and is the only session left.
    assert mine.get("/").status_code == 200
    assert Session.objects.count() == 1
    assert Session.objects.get().session_key == mine.session.session_key
    event = AuditEvent.objects.get(action=events.PASSWORD_CHANGED)
    assert event.actor_username == doctor.username
    assert event.extra["other_sessions_ended"] == 2


def test_it_changes_the_password_hashed_with_argon2(client: Client, doctor: User, settings) -> None:
    # The first hasher hashes (production's); the test persona's password is MD5 (fast).
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    log_in(client, doctor)
    assert client.get(URL).status_code == 200
    assert _change(client).status_code == 302
    assert _password_is(doctor, NEW)
    assert doctor.password.startswith("argon2$argon2id$")


def test_it_applies_the_password_validators(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    response = _change(client, new="123")
    assert response.status_code == 200
    assert response.context["form"].errors["password"]
    assert _password_is(doctor, PASSWORD)
    refused = AuditEvent.objects.get(action=events.PASSWORD_CHANGE_REFUSED)
    assert refused.reason == "weak_password"


def test_it_wants_the_new_password_twice_the_same(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    response = _change(client, again=NEW + "x")
    assert response.context["form"].errors["password_again"]
    assert _password_is(doctor, PASSWORD)


def test_attack_guessing_the_current_password_is_held_to_the_login_limits(
    client: Client, doctor: User, settings
) -> None:
    # A stolen, fresh session must not become a guessing oracle for the password: the
    # current password is counted before it is checked, like a password at login.
    log_in(client, doctor)
    for _ in range(settings.VIGIE_LOGIN_DELAY_FREE_ATTEMPTS):
        assert _change(client, current="a guess").status_code == 200
    # Past the free attempts, the account's delay: refused without checking, even the
    # right password, with the wait to respect.
    response = _change(client, current=PASSWORD)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert _password_is(doctor, PASSWORD)
    assert AuditEvent.objects.filter(action=events.LOGIN_DELAYED).exists()
    # A delay, not a lock: the session survives.
    assert client.get("/").status_code == 200


def test_the_portal_header_links_to_the_password_and_recovery_codes(
    client: Client, doctor: User
) -> None:
    log_in(client, doctor)
    page = client.get("/").content.decode()
    assert f'href="{URL}"' in page
    assert 'href="/accounts/recovery-codes/"' in page


def test_renewing_the_recovery_codes_is_audited(client: Client, doctor: User) -> None:
    log_in(client, doctor)
    response = client.post("/accounts/recovery-codes/new/")
    assert response["Location"] == "/accounts/recovery-codes/"
    event = AuditEvent.objects.get(action=events.MFA_RECOVERY_CODES_RENEWED)
    assert (event.actor_username, event.extra["codes"]) == (doctor.username, 10)
