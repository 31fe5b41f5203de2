"""The invitation: the only way to a password, used once, for 72 hours; a reset ends every
credential and session of the account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts import invitations, lockout, otp
from vigie.accounts.models import Invitation, Role, User
from vigie.accounts.testing import PASSWORD, log_in, make_user
from vigie.alerts.models import Alert, Audience
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a password only the doctor knows 314"


@pytest.fixture(autouse=True)
def _audit_inline(settings: Any) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False


def _accept(client: Client, username: str, code: str, password: str = NEW_PASSWORD) -> Any:
    return client.post(
        "/accounts/invitation/",
        {"username": username, "code": code, "password": password, "password_again": password},
    )


def test_the_invitation_page_is_public_and_asks_for_the_code(client: Client) -> None:
    response = client.get("/accounts/invitation/")
    assert response.status_code == 200
    assert 'name="code"' in response.content.decode()


def test_it_sets_the_password_then_sends_to_enrolment(client: Client, newcomer: User) -> None:
    issued = invitations.issue(newcomer, by="it.admin")
    # People read codes aloud: case and separators do not matter.
    response = _accept(client, "DR.NEW", issued.code.lower().replace("-", " "))
    assert response.status_code == 302
    assert response["Location"] == "/accounts/enrol/"
    newcomer.refresh_from_db()
    assert newcomer.check_password(NEW_PASSWORD)
    assert client.get("/accounts/enrol/").status_code == 200
    assert AuditEvent.objects.filter(action="account.invitation.used").count() == 1


def test_it_refuses_an_invitation_used_twice(client: Client, newcomer: User) -> None:
    issued = invitations.issue(newcomer, by="it.admin")
    assert _accept(client, "dr.new", issued.code).status_code == 302
    again = _accept(Client(), "dr.new", issued.code, "someone else's choice 2718")
    assert again.status_code == 200
    assert 'id="invitation-error"' in again.content.decode()
    newcomer.refresh_from_db()
    assert newcomer.check_password(NEW_PASSWORD)


def test_it_refuses_an_expired_invitation(client: Client, newcomer: User) -> None:
    issued = invitations.issue(newcomer, by="it.admin")
    assert issued.invitation.expires_at - issued.invitation.created_at == timedelta(hours=72)
    Invitation.objects.filter(pk=issued.invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert _accept(client, "dr.new", issued.code).status_code == 200
    newcomer.refresh_from_db()
    assert not newcomer.has_usable_password() or not newcomer.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action="account.invitation.refused").count() == 1


def test_it_refuses_a_code_for_another_account(client: Client, newcomer: User) -> None:
    victim = make_user("dr.victim", enrolled=True)
    issued = invitations.issue(newcomer, by="it.admin")
    assert _accept(client, victim.username, issued.code).status_code == 200
    victim.refresh_from_db()
    assert victim.check_password(PASSWORD)


def test_a_new_invitation_revokes_the_previous_one(client: Client, newcomer: User) -> None:
    first = invitations.issue(newcomer, by="it.admin")
    invitations.issue(newcomer, by="it.admin")
    assert _accept(client, "dr.new", first.code).status_code == 200


def test_it_refuses_a_weak_password_and_keeps_the_invitation(
    client: Client, newcomer: User
) -> None:
    issued = invitations.issue(newcomer, by="it.admin")
    assert _accept(client, "dr.new", issued.code, "12345678").status_code == 200
    assert Invitation.objects.usable().filter(pk=issued.invitation.pk).exists()


def test_attack_guessing_an_invitation_code_is_held_to_the_password_delay(
    newcomer: User, settings: Any
) -> None:
    # A code is counted like a password on its account, before it is looked at: from many
    # addresses (no address lock), past the free attempts even the right code waits.
    issued = invitations.issue(newcomer, by="it.admin")
    for i in range(settings.VIGIE_LOGIN_DELAY_FREE_ATTEMPTS):
        guess = Client(REMOTE_ADDR=f"203.0.113.{i}")
        assert _accept(guess, "dr.new", "AAAA-BBBB-CCCC").status_code == 200
    response = _accept(Client(REMOTE_ADDR="192.0.2.50"), "dr.new", issued.code)
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert wait >= 1
    # The form again, saying how long to wait (a wait, not the locked page).
    page = response.content.decode()
    assert 'id="invitation-error"' in page
    assert f"{wait} second" in page  # "seconde(s)" in French, "second(s)" in English
    assert 'name="code"' in page
    assert Invitation.objects.usable().filter(pk=issued.invitation.pk).exists()
    assert AuditEvent.objects.filter(action="login.delayed", extra__username="dr.new").exists()


def test_attack_sustained_invitation_code_guesses_alert_it_as_login_guesses_do(
    newcomer: User, settings: Any
) -> None:
    # Someone trying codes for a new account, from many addresses: slowed by the account's
    # delay, and IT told while it goes on, as for passwords (nobody else would notice: the
    # account has no owner yet to find it locked).
    invitations.issue(newcomer, by="it.admin")
    settings.VIGIE_LOGIN_ALERT_ATTEMPTS = settings.VIGIE_LOGIN_DELAY_FREE_ATTEMPTS
    for i in range(settings.VIGIE_LOGIN_DELAY_FREE_ATTEMPTS):
        guess = Client(REMOTE_ADDR=f"203.0.113.{i}")
        assert _accept(guess, "dr.new", "AAAA-BBBB-CCCC").status_code == 200
    alert = Alert.objects.get(kind=lockout.SUSTAINED_ALERT)
    assert alert.audience == Audience.ADMIN
    assert alert.details["username"] == "dr.new"
    assert AuditEvent.objects.filter(action="login.sustained_failures").count() == 1


def test_attack_spraying_invitation_codes_from_one_address_locks_it(
    client: Client, newcomer: User, settings: Any
) -> None:
    # One address, a different identifier each time: the address's hard lock, whose page
    # ends the attempt (not the form), even for a right code on a real invitation.
    issued = invitations.issue(newcomer, by="it.admin")
    for i in range(settings.VIGIE_LOCKOUT_FAILURES):
        assert _accept(client, f"guess{i}", "AAAA-BBBB-CCCC").status_code == 200
    response = _accept(client, "dr.new", issued.code)
    assert response.status_code == 429
    assert response.templates[0].name == "accounts/locked.html"
    assert 'name="code"' not in response.content.decode()
    assert Invitation.objects.usable().filter(pk=issued.invitation.pk).exists()
    locked = AuditEvent.objects.get(action="login.locked")
    assert locked.extra == {"username": "dr.new", "step": "password"}


def test_reset_revokes_every_device_and_session_and_alerts_the_auditor(doctor: User) -> None:
    it = make_user("it.admin", role=Role.ADMIN)
    otp.new_recovery_codes(doctor)
    doctor_browser = Client()
    log_in(doctor_browser, doctor)
    assert doctor_browser.get("/").status_code == 200
    admin_browser = Client()
    log_in(admin_browser, it)
    response = admin_browser.post(
        "/admin/accounts/user/",
        {"action": "reset_credentials", "_selected_action": [doctor.pk]},
    )
    assert response.status_code == 200
    code = response.context["issued"][0]["code"]
    doctor.refresh_from_db()
    assert not doctor.has_usable_password()
    assert not TOTPDevice.objects.filter(user=doctor).exists()
    assert not StaticDevice.objects.filter(user=doctor).exists()
    # The doctor's open session is gone (a stolen copy of its cookie too).
    assert doctor_browser.get("/")["Location"].startswith("/accounts/login/")
    alert = Alert.objects.get(kind="account.reset")
    assert alert.audience == Audience.AUDITOR
    assert "it.admin" in alert.summary
    assert AuditEvent.objects.filter(action="account.reset", actor_username="it.admin").exists()
    # The new invitation works, and starts from nothing: a new authenticator is enrolled.
    assert _accept(Client(), doctor.username, code)["Location"] == "/accounts/enrol/"


# --- invitations from the admin ---


def test_a_new_account_gets_an_invitation_shown_once_and_no_password() -> None:
    it_client = Client()
    log_in(it_client, make_user("it.admin", role=Role.ADMIN))
    response = it_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "Dr.Newman",
            "first_name": "Ann",
            "last_name": "Newman",
            "email": "",
            "role": Role.DOCTOR,
        },
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    user = User.objects.get(username="dr.newman")
    assert not user.has_usable_password()
    invitation = Invitation.objects.get(user=user)
    code = response.context["issued"][0]["code"]
    assert code in response.content.decode()
    assert code not in invitation.code_hash
    assert Alert.objects.filter(kind="account.role_changed", summary__contains="dr.newman")
    # Shown once: nothing on any later page.
    assert code not in it_client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
