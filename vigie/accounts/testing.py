"""Helpers for tests across apps: personas with a second factor, codes, verified sessions.

    from vigie.accounts.testing import make_user, log_in
    doctor = make_user("dr.house", role=Role.DOCTOR)
    log_in(client, doctor)          # a fully verified session, as after the real login

`log_in` skips the login pages (fast) but produces exactly the session state they produce;
the accounts tests exercise the pages themselves.
"""

from __future__ import annotations

import time
from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP

from vigie.accounts.models import Role, SealedTOTPDevice, User
from vigie.accounts.otp import SECOND_FACTOR_AT, TOTP_DEVICE_NAME
from vigie.accounts.sessions import AUTH_AT, LAST_SEEN

PASSWORD = "correct horse battery staple 42"  # noqa: S105 -- test-only persona password


def make_user(
    username: str, *, role: Role = Role.DOCTOR, enrolled: bool = True, **fields: Any
) -> User:
    """A user with PASSWORD and, if `enrolled`, a confirmed TOTP device."""
    if role == Role.ADMIN:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
    user = User(username=username, role=role, **fields)
    user.set_password(PASSWORD)
    user.save()
    if enrolled:
        SealedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    return user


def totp_device(user: User) -> SealedTOTPDevice:
    device: SealedTOTPDevice = SealedTOTPDevice.objects.get(user=user, confirmed=True)
    return device


def code_at_step(device: SealedTOTPDevice, step: int) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, 0)
    totp.time = device.t0 + step * device.step
    return f"{totp.token():0{device.digits}d}"


def current_step(device: SealedTOTPDevice) -> int:
    return int((time.time() - device.t0) // device.step)


def fresh_code(device: SealedTOTPDevice) -> str:
    """A code the device accepts now and has not accepted before (replay protection)."""
    device.refresh_from_db()
    now = current_step(device)
    centre = now + device.drift
    usable = [
        step
        for step in range(centre - device.tolerance, centre + device.tolerance + 1)
        if step > device.last_t
    ]
    if not usable:
        raise AssertionError("no unused code in the tolerance window; advance the clock")
    # Prefer the earliest step not in the past: it stays valid if a 30 s boundary passes
    # before the code is checked (a past step's code could then be too old).
    current_or_later = [step for step in usable if step >= now]
    return code_at_step(device, min(current_or_later) if current_or_later else max(usable))


def current_codes(device: SealedTOTPDevice) -> set[str]:
    """Every code the device could accept around now (for "never displayed" checks)."""
    now = current_step(device)
    return {code_at_step(device, s) for s in range(now - 2, now + 3)}


def log_in(client: Client, user: User) -> None:
    """Give `client` a fully logged-in, second-factor-verified, freshly re-authenticated
    session for `user`."""
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = SealedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    stamp = time.time()
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[AUTH_AT] = stamp
    session[LAST_SEEN] = stamp
    session[SECOND_FACTOR_AT] = stamp
    session.save()


def log_in_password_only(client: Client, user: User) -> None:
    """The half-logged-in state: password accepted, second factor not yet given."""
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
