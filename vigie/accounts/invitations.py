"""Invitations: how a person gets credentials that nobody else ever knew.

An administrator creates an account, or resets one, and receives a one-time code (shown once,
handed over out of band); only its hash is stored. With it the person chooses a password and
then enrols an authenticator (the ordinary first-login path). So an administrator never holds
a doctor's final credentials and cannot log in as one — the audit trail's names stay true.

A reset ends everything the account had: password, authenticators, recovery codes, sessions,
earlier invitations; it and every change of role to doctor alert the auditor, since those
are the two ways an administrator could come to read as a doctor.
"""

from __future__ import annotations

import hashlib
import secrets
from base64 import b32encode
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from vigie.accounts import otp
from vigie.accounts.models import Invitation, Role, User

VALID_HOURS = 72
# 100 random bits, as 20 base32 characters in groups of four: read over the phone or copied
# from a letter without ambiguity (base32 has no 0, 1, 8 or 9 to mistake for O, I or B).
_CODE_BYTES = 13

ISSUED = "account.invitation.issued"
USED = "account.invitation.used"
REFUSED = "account.invitation.refused"
RESET = "account.reset"
ROLE_CHANGED = "account.role_changed"


class InvitationError(Exception):
    """The code is unknown, used, revoked or expired (one message for all: no probing)."""


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    code: str  # shown once; only its hash is stored


def _normalise(code: str) -> str:
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def code_hash(code: str) -> str:
    # A plain hash is enough for 100 random bits: nothing to guess from it.
    return hashlib.sha256(_normalise(code).encode("ascii", "replace")).hexdigest()


def _new_code() -> str:
    raw = b32encode(secrets.token_bytes(_CODE_BYTES)).decode("ascii")[:20]
    return "-".join(raw[i : i + 4] for i in range(0, 20, 4))


def _audit(action: str, *, request: HttpRequest | None, user: User, **extra: object) -> None:
    from vigie.audit.log import record

    record(
        action,
        request=request,
        extra={"model": "accounts.user", "object_id": str(user.pk), "username": user.username}
        | extra,
    )


def _alert(kind: str, summary: str, user: User, by: str) -> None:
    from vigie.alerts.services import raise_alert

    raise_alert(
        kind,
        severity="warning",
        summary=summary,
        details={"user": user.username, "user_id": user.pk, "by": by},
        # One alert per event, never folded into an earlier one.
        dedupe_key=f"{kind}:{user.pk}:{secrets.token_hex(4)}",
    )


@transaction.atomic
def issue(user: User, *, by: str, request: HttpRequest | None = None) -> IssuedInvitation:
    """A new invitation for `user`; any earlier one still open stops working."""
    now = timezone.now()
    Invitation.objects.filter(user=user).usable().update(revoked_at=now)
    code = _new_code()
    invitation = Invitation.objects.create(
        user=user,
        code_hash=code_hash(code),
        created_at=now,
        expires_at=now + timedelta(hours=VALID_HOURS),
        created_by=by[:150],
    )
    _audit(ISSUED, request=request, user=user, by=by, expires_at=invitation.expires_at.isoformat())
    return IssuedInvitation(invitation, code)


def end_sessions(user: User, *, keep: str | None = None) -> int:
    """Delete every stored session of `user` (the cookie, wherever copied, stops working),
    but the one whose key is `keep` (the browser that asked, after a password change)."""
    ended = 0
    others = Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep)
    for session in others.iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
            ended += 1
    return ended


@transaction.atomic
def reset(user: User, *, by: str, request: HttpRequest | None = None) -> IssuedInvitation:
    """Revoke every credential and session of `user`, and issue a new invitation."""
    user.set_unusable_password()  # also changes the session hash: old sessions fail
    user.save(update_fields=["password"])
    devices = otp.revoke_all_devices(user)
    sessions = end_sessions(user)
    _audit(RESET, request=request, user=user, by=by, devices=devices, sessions=sessions)
    _alert(RESET, f"The credentials of {user.username} were reset by {by}", user, by)
    return issue(user, by=by, request=request)


def role_changed(user: User, old: str, *, by: str, request: HttpRequest | None = None) -> None:
    """Record a change of role; becoming a doctor alerts the auditor."""
    _audit(ROLE_CHANGED, request=request, user=user, by=by, old=old, new=user.role)
    if user.role == Role.DOCTOR and old != Role.DOCTOR:
        was = old or "new account"
        _alert(ROLE_CHANGED, f"{user.username} became a doctor ({was}) by {by}", user, by)


def find(username: str, code: str) -> Invitation:
    """The usable invitation of `username` matching `code`, or InvitationError."""
    invitation = (
        Invitation.objects.usable()
        .select_related("user")
        .filter(code_hash=code_hash(code), user__username=User.normalize_username(username))
        .first()
    )
    if invitation is None or not invitation.user.is_active:
        raise InvitationError
    return invitation


@transaction.atomic
def redeem(username: str, code: str, password: str, *, request: HttpRequest | None = None) -> User:
    """Spend the invitation: set `password` (validated), clear any second factor, return the
    user, who must now enrol an authenticator. Raises InvitationError or ValidationError."""
    invitation = find(username, code)
    user = invitation.user
    validate_password(password, user)
    # Conditional: of two concurrent uses of one code, only one updates the row.
    spent = Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if spent != 1:
        raise InvitationError
    user.set_password(password)
    user.save(update_fields=["password"])
    # Whoever holds the invitation sets up the second factor, from nothing.
    otp.revoke_all_devices(user)
    end_sessions(user)
    from vigie.audit.log import record

    record(
        USED,
        request=request,
        actor=user,
        extra={"model": "accounts.user", "object_id": str(user.pk), "username": user.username},
    )
    return user


def doctors_created(usernames: list[str], *, by: str) -> None:
    """One alert for accounts created with the doctor role in bulk (an import)."""
    from vigie.alerts.services import raise_alert

    raise_alert(
        ROLE_CHANGED,
        severity="warning",
        summary=f"{len(usernames)} doctor account(s) created by {by}",
        details={"users": usernames[:200], "by": by},
        dedupe_key=f"{ROLE_CHANGED}:bulk:{secrets.token_hex(4)}",
    )
