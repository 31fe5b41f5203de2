"""The second factor: TOTP codes and single-use recovery codes, with one lockout counter.

Other apps use two names from here: `verify_code(user, code)` checks a code typed by the
user (for re-authentication before a sensitive action) and `mark_second_factor_fresh(request)`
records that the session has just proved the second factor.

Why not django_otp.match_token(): it lets two concurrent requests both accept the same code
(read last_t, compare, save). Here each device row is locked while it is checked, so a code is
accepted once even under concurrency. Every code is counted (accounts/lockout.py) before it is
checked, per account and per source address: a locked account or address gets LockedOut and
no code is looked at.
"""

from __future__ import annotations

import contextvars
import re
import time
from typing import TYPE_CHECKING

from django.db import transaction
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts import lockout
from vigie.accounts.models import SealedTOTPDevice

if TYPE_CHECKING:
    from vigie.accounts.models import User

# Session key: Unix time of the last successful second-factor check in this session.
SECOND_FACTOR_AT = "vigie_second_factor_at"
RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"

_TOTP_SHAPE = re.compile(r"\d{6,8}")
_SEPARATORS = re.compile(r"[\s-]+")

# The request being served, set by SessionPolicyMiddleware, so that verify_code() called
# without `request=` still counts against the source address.
current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "vigie_current_request", default=None
)


def _normalise(code: str) -> str:
    # People type "123 456" or "abcde-fghij"; neither separator is part of a code.
    return _SEPARATORS.sub("", code or "").lower()


# Kept in step with accounts/migrations/0003_seal_second_factors.py, which hashed the codes
# stored in clear before.
RECOVERY_CODE_SALT = "vigie.accounts.recovery-code"


def recovery_code_hash(code: str) -> str:
    """What is stored for a recovery code: a keyed hash, never the code.

    Keyed with the secret key (kept with the keyring, apart from the database), so a stolen
    database cannot even be searched offline for the 40-bit codes; 64 bits fit django-otp's
    16-character token column, far beyond what the lockout lets anyone try online.
    """
    return salted_hmac(RECOVERY_CODE_SALT, _normalise(code), algorithm="sha256").hexdigest()[:16]


def _match_totp(user: User, code: str) -> Device | None:
    if not _TOTP_SHAPE.fullmatch(code):
        return None
    with transaction.atomic():
        devices = SealedTOTPDevice.objects.select_for_update().filter(user=user, confirmed=True)
        for device in devices:
            # verify_token() refuses any time step <= last_t: a code works once.
            if device.verify_token(code):
                return device
    return None


def _match_recovery(user: User, code: str) -> Device | None:
    if not code:
        return None
    for device in StaticDevice.objects.filter(user=user, confirmed=True):
        # A conditional delete is atomic: of two concurrent uses, only one deletes the row.
        deleted, _ = StaticToken.objects.filter(
            device=device, token=recovery_code_hash(code)
        ).delete()
        if deleted:
            device.set_last_used_timestamp(commit=True)
            return device
    return None


class LockedOut(Exception):
    """Too many codes: refused before any code was checked."""

    def __init__(self, refusal: lockout.Refused) -> None:
        super().__init__(refusal.scope, refusal.retry_after)
        self.retry_after = refusal.retry_after


def _reserve(user: User, request: HttpRequest | None) -> lockout.Reservation:
    request = request if request is not None else current_request.get()
    try:
        return lockout.reserve_code(user, lockout.client_ip(request))
    except lockout.Refused as refusal:
        raise LockedOut(refusal) from None


def match_device(user: User, code: str, *, request: HttpRequest | None = None) -> Device | None:
    """The device that accepts `code` (consuming it), or None.

    The attempt is counted first, per account and per source address; raises LockedOut,
    without looking at the code, when either has no attempt left in this window.
    """
    reservation = _reserve(user, request)
    token = _normalise(code)
    device = _match_totp(user, token) or _match_recovery(user, token)
    if device is not None:
        reservation.succeeded()
    return device


def verify_code(user: User, code: str, *, request: HttpRequest | None = None) -> bool:
    """True when `code` is a current TOTP code or an unused recovery code of `user`.

    A TOTP code is accepted once (replay protection), a recovery code once ever. Every code
    counts toward the account's and the address's lockout; while locked, False without
    checking. Pass `request` when you have it; otherwise the request being served is used.
    """
    try:
        return match_device(user, code, request=request) is not None
    except LockedOut:
        return False


def is_recovery_device(device: Device) -> bool:
    return isinstance(device, StaticDevice)


def mark_second_factor_fresh(request: HttpRequest) -> None:
    """Record that this session proved the second factor just now (for re-authentication)."""
    request.session[SECOND_FACTOR_AT] = time.time()


def second_factor_age(request: HttpRequest) -> float | None:
    """Seconds since this session last proved the second factor, or None if it never did."""
    value = request.session.get(SECOND_FACTOR_AT)
    if not isinstance(value, int | float):
        return None
    return max(0.0, time.time() - float(value))


# --- enrolment ---


def confirmed_totp_device(user: User) -> SealedTOTPDevice | None:
    device: SealedTOTPDevice | None = SealedTOTPDevice.objects.filter(
        user=user, confirmed=True
    ).first()
    return device


def pending_totp_device(user: User) -> SealedTOTPDevice:
    """The unconfirmed device being enrolled; reused so a page reload keeps the scanned key."""
    device: SealedTOTPDevice | None = SealedTOTPDevice.objects.filter(
        user=user, confirmed=False
    ).first()
    if device is None:
        device = SealedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


@transaction.atomic
def revoke_all_devices(user: User) -> int:
    """Delete every second factor of `user` (authenticators, their seeds, recovery codes)
    and revoke their passkeys (kept, so that a later use is recognised and audited)."""
    from vigie.accounts.passkeys import revoke_all

    totp: int = TOTPDevice.objects.filter(user=user).delete()[0]
    static: int = StaticDevice.objects.filter(user=user).delete()[0]
    return totp + static + revoke_all(user, "reset")


def has_confirmed_factor(user: User) -> bool:
    """True when `user` has an authenticator or an active passkey (enrolment is then over:
    a password alone must never add a factor beside one the account already has)."""
    from vigie.accounts.models import Passkey

    return (
        confirmed_totp_device(user) is not None
        or Passkey.objects.filter(user=user, confirmed=True).exists()
    )


@transaction.atomic
def confirm_enrolment(user: User, device: TOTPDevice) -> list[str]:
    """Confirm `device`, drop any other authenticator, and issue fresh recovery codes."""
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return new_recovery_codes(user)


@transaction.atomic
def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with RECOVERY_CODE_COUNT new ones (returned once)."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(
        StaticToken(device=device, token=recovery_code_hash(c)) for c in codes
    )
    return codes


def confirm_pending_code(
    user: User, device: TOTPDevice, code: str, *, request: HttpRequest | None = None
) -> bool:
    """Check a code against a device being enrolled (not yet confirmed); counted first, as
    match_device() does (raises LockedOut the same way)."""
    reservation = _reserve(user, request)
    token = _normalise(code)
    ok = False
    if _TOTP_SHAPE.fullmatch(token):
        with transaction.atomic():
            locked = SealedTOTPDevice.objects.select_for_update().get(pk=device.pk)
            ok = bool(locked.verify_token(token))
    if ok:
        reservation.succeeded()
    return ok
