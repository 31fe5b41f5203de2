"""The signed-in user's own credentials: change the password, renew the recovery codes.

Both run only behind `require_fresh_second_factor` (the views), and each is audited. A
stolen session cookie alone therefore changes nothing: the password change also wants the
current password, which is counted before it is checked exactly like a password at login
(lockout.py), so the form is no way around the login's limits.
"""

from __future__ import annotations

from django.contrib.auth import password_validation, update_session_auth_hash
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from vigie.accounts import events, lockout, otp
from vigie.accounts.invitations import end_sessions
from vigie.accounts.models import User


class WrongCurrentPassword(Exception):
    """The current password given is not the account's (audited, counted)."""


def change_password(request: HttpRequest, user: User, current: str, new: str) -> int:
    """Set `user`'s password to `new` if `current` is right; the other sessions ended.

    Raises `WrongCurrentPassword`, or `ValidationError` from Django's password validators
    (AUTH_PASSWORD_VALIDATORS), with the password unchanged. Returns how many other
    sessions were ended. The new password is hashed by the first of PASSWORD_HASHERS
    (Argon2id), as at enrolment.
    """
    # Counted like a password at login, before it is checked (raises lockout.Refused): same
    # account, same address, same limits.
    reservation = lockout.reserve_password(user.get_username(), lockout.client_ip(request))
    if not user.check_password(current):
        lockout.note_password_attempt(reservation, user.get_username(), request)
        events.audit(
            events.PASSWORD_CHANGE_REFUSED,
            request=request,
            actor=user,
            outcome="failure",
            reason="wrong_current_password",
        )
        raise WrongCurrentPassword
    reservation.succeeded()
    try:
        password_validation.validate_password(new, user)
    except ValidationError:
        events.audit(
            events.PASSWORD_CHANGE_REFUSED,
            request=request,
            actor=user,
            outcome="failure",
            reason="weak_password",
        )
        raise
    with transaction.atomic():
        user.set_password(new)
        user.save(update_fields=["password"])
        # This browser keeps its session, under a new id; every other one (a cookie copied
        # earlier, a forgotten workstation) is deleted: whoever held it must log in again,
        # with the new password.
        update_session_auth_hash(request, user)
        ended = end_sessions(user, keep=request.session.session_key)
        events.audit(
            events.PASSWORD_CHANGED,
            request=request,
            actor=user,
            extra={"other_sessions_ended": ended},
        )
    return ended


def renew_recovery_codes(request: HttpRequest, user: User) -> list[str]:
    """New recovery codes for `user` (the old ones stop working), audited; shown once."""
    with transaction.atomic():
        codes = otp.new_recovery_codes(user)
        events.audit(
            events.MFA_RECOVERY_CODES_RENEWED,
            request=request,
            actor=user,
            extra={"codes": len(codes)},
        )
    return codes
