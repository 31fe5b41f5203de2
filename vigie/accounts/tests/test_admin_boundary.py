"""Issue 16, part 4: an IT administrator cannot read a doctor's second factor, set their
password or make himself a doctor; the boundary holds against the admin's own pages."""

from __future__ import annotations

from base64 import b32encode
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice

from vigie.accounts import otp
from vigie.accounts.models import Role, User
from vigie.accounts.testing import PASSWORD, log_in, totp_device
from vigie.alerts.models import Alert, Audience
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _audit_inline(settings: Any) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False


@pytest.fixture
def it_client(admin_user: User) -> Client:
    client = Client()
    log_in(client, admin_user)
    return client


def _user_form(user: User, **changes: Any) -> dict[str, Any]:
    """Every field the user change form had before and after issue 16, as a browser posts."""
    data: dict[str, Any] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": user.role,
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-11-01",
        "date_joined_1": "08:00:00",
    }
    if user.is_staff:
        data["is_staff"] = "on"
    if user.is_superuser:
        data["is_superuser"] = "on"
    data.update(changes)
    return data


# --- second-factor secrets ---


def test_attack_admin_reads_a_doctors_totp_key_in_the_device_admin(
    it_client: Client, doctor: User
) -> None:
    device = totp_device(doctor)
    seed = device.bin_key
    for url in (
        "/admin/otp_totp/totpdevice/",
        f"/admin/otp_totp/totpdevice/{device.pk}/change/",
        f"/admin/otp_totp/totpdevice/{device.pk}/config/",
        f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/",
        f"/admin/accounts/user/{doctor.pk}/change/",
    ):
        response = it_client.get(url)
        body = response.content.decode(errors="replace")
        assert seed.hex() not in body, url
        assert b32encode(seed).decode() not in body, url
        assert "otpauth://" not in body, url
    assert it_client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").status_code == 404


def test_attack_admin_reads_a_doctors_recovery_codes(it_client: Client, doctor: User) -> None:
    codes = otp.new_recovery_codes(doctor)
    device = StaticDevice.objects.get(user=doctor)
    for url in (
        "/admin/otp_static/staticdevice/",
        f"/admin/otp_static/staticdevice/{device.pk}/change/",
    ):
        body = it_client.get(url).content.decode()
        assert not any(code in body for code in codes), url
    assert it_client.get(f"/admin/otp_static/staticdevice/{device.pk}/change/").status_code == 404


def test_attack_a_copy_of_the_database_gives_no_seed_and_no_recovery_code(doctor: User) -> None:
    seed = totp_device(doctor).bin_key
    codes = otp.new_recovery_codes(doctor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM otp_totp_totpdevice")
        keys = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT token FROM otp_static_statictoken")
        tokens = {row[0] for row in cursor.fetchall()}
    assert seed.hex() not in keys
    assert not set(codes) & tokens
    # ... and the doctor's codes still work.
    assert otp.verify_code(doctor, codes[0]) is True
    assert otp.verify_code(doctor, codes[0]) is False


# --- passwords ---


def test_attack_admin_sets_a_doctors_password(it_client: Client, doctor: User) -> None:
    chosen = "the admin now knows this one 77"
    response = it_client.post(
        f"/admin/accounts/user/{doctor.pk}/password/",
        {"password1": chosen, "password2": chosen, "usable_password": "true"},
    )
    # The page is not served (the admin's catch-all then redirects to a missing object).
    assert response.status_code in (302, 403, 404)
    assert not response.get("Location", "").endswith(f"/user/{doctor.pk}/change/")
    # Nor through the change form, nor the add form.
    it_client.post(f"/admin/accounts/user/{doctor.pk}/change/", _user_form(doctor, password=chosen))
    it_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "dr.puppet",
            "password1": chosen,
            "password2": chosen,
            "usable_password": "true",
            "role": Role.DOCTOR,
            "first_name": "Pu",
            "last_name": "Ppet",
        },
    )
    doctor.refresh_from_db()
    assert not doctor.check_password(chosen)
    assert doctor.check_password(PASSWORD)
    puppet = User.objects.get(username="dr.puppet")
    assert not puppet.has_usable_password()
    body = it_client.get(f"/admin/accounts/user/{doctor.pk}/change/").content.decode()
    assert "password" not in body.lower().replace("password_", "")


# --- roles ---


def test_attack_admin_gives_himself_the_doctor_role(it_client: Client, admin_user: User) -> None:
    response = it_client.post(
        f"/admin/accounts/user/{admin_user.pk}/change/",
        _user_form(admin_user, role=Role.DOCTOR),
    )
    assert response.status_code in (200, 302, 403)
    admin_user.refresh_from_db()
    assert admin_user.role == Role.ADMIN
    assert not Alert.objects.filter(kind="account.role_changed").exists()


def test_attack_admin_makes_himself_superuser() -> None:
    # An IT member allowed to manage accounts, but not everything, raises his own rights.
    from django.contrib.auth.models import Permission

    junior = User.objects.create_user("it.junior", role=Role.ADMIN, is_staff=True)
    junior.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    client = Client()
    log_in(client, junior)
    response = client.post(
        f"/admin/accounts/user/{junior.pk}/change/", _user_form(junior, is_superuser="on")
    )
    assert response.status_code in (200, 302, 403)
    junior.refresh_from_db()
    assert junior.is_superuser is False


def test_a_change_of_role_to_doctor_alerts_the_auditor(it_client: Client) -> None:
    other = User.objects.create_user("it.other", role=Role.ADMIN)
    response = it_client.post(
        f"/admin/accounts/user/{other.pk}/change/", _user_form(other, role=Role.DOCTOR)
    )
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.role == Role.DOCTOR
    alert = Alert.objects.get(kind="account.role_changed")
    assert alert.audience == Audience.AUDITOR
    assert "it.other" in alert.summary
    event = AuditEvent.objects.get(action="account.role_changed")
    assert event.extra["old"] == Role.ADMIN
    assert event.extra["new"] == Role.DOCTOR
