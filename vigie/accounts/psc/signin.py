"""What a verified Pro Santé Connect identity does to the session.

PSC authenticated the professional with two factors itself (the CPS card and its PIN, or
the e-CPS app): the session becomes fully signed in at once, under a new id, exactly as
after a password and a TOTP code (sessions.start_password_session then
complete_second_factor), with the PSC "device" as its verified second factor.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import django_otp
from django.conf import settings
from django.contrib.auth import login
from django.http import HttpRequest
from django.utils import timezone

from vigie.accounts import events, signin_policy
from vigie.accounts.models import User
from vigie.accounts.otp import mark_second_factor_fresh
from vigie.accounts.psc.client import LEEWAY_SECONDS, Refused
from vigie.accounts.psc.identity import PscIdentity
from vigie.accounts.psc.models import PscDevice, PscSession
from vigie.accounts.sessions import AUTH_AT, LAST_SEEN, now

REFUSED = "psc.refused"
DEVICE_NAME = "Pro Santé Connect"


def device_for(user: User) -> PscDevice:
    device: PscDevice
    device, _ = PscDevice.objects.get_or_create(
        user=user, defaults={"name": DEVICE_NAME, "confirmed": True}
    )
    if not device.confirmed:
        # An administrator may have unconfirmed it; a new verified sign-in confirms again.
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return device


def sign_in(
    request: HttpRequest, user: User, identity: PscIdentity, claims: dict[str, Any]
) -> None:
    """Both factors proved by PSC: a new, fully signed-in session for `user`."""
    # Whatever this browser's session held (another account, a half-done password login)
    # is dropped, not carried over.
    request.session.flush()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    stamp = now()
    request.session[AUTH_AT] = stamp
    request.session[LAST_SEEN] = stamp
    django_otp.login(request, device_for(user))
    request.session.cycle_key()
    mark_second_factor_fresh(request)
    # Judged on every request by the sign-in policy (VIGIE_SIGNIN_METHODS).
    signin_policy.record_method(request, signin_policy.PSC)
    request.session.save()
    _remember(request, user, claims)
    extra = {"method": "psc", "acr": str(claims.get("acr", ""))[:50], **identity.summary()}
    events.audit(events.LOGIN_SUCCESS, request=request, actor=user, extra={"step": "psc", **extra})
    events.audit(events.MFA_SUCCESS, request=request, actor=user, extra=extra)


def _remember(request: HttpRequest, user: User, claims: dict[str, Any]) -> None:
    """Which local session this PSC session opened, for a later back-channel logout."""
    # Rows older than any session can live are of no more use (their sessions are gone).
    too_old = timezone.now() - timedelta(hours=settings.VIGIE_SESSION_ABSOLUTE_HOURS)
    PscSession.objects.filter(created_at__lt=too_old).delete()
    PscSession.objects.create(
        session_key=request.session.session_key or "",
        sid=str(claims.get("sid") or "")[:255],
        sub=str(claims.get("sub") or "")[:255],
        user=user,
    )


def check_fresh(claims: dict[str, Any], max_age: int) -> None:
    """Re-authentication asked `max_age` (and prompt=login): the provider's auth_time must
    say the professional authenticated again just now, not that an old PSC session was
    reused."""
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int | float):
        raise Refused("bad_auth_time", "missing")
    if time.time() - float(auth_time) > max_age + LEEWAY_SECONDS:
        raise Refused("bad_auth_time", "not fresh")


def confirm_again(request: HttpRequest, user: User, identity: PscIdentity) -> None:
    """Re-authentication by PSC: the session's second factor is fresh again."""
    mark_second_factor_fresh(request)
    events.audit(
        events.MFA_SUCCESS,
        request=request,
        actor=user,
        extra={"purpose": "reauth", "method": "psc", **identity.summary()},
    )


# Refusals anyone can cause at no cost (a callback with a made-up state needs no trip to
# PSC; while PSC is down, every click on the button fails): counted per source and minute
# like the API's anonymous refusals, so that a flood cannot grow the audit chain without
# bound. The others each took a real PSC answer.
FREE_REFUSALS = frozenset({"state_mismatch", "provider_unreachable", "bad_metadata"})


def refused(request: HttpRequest, refusal: Refused, **extra: Any) -> None:
    from vigie.audit import refusals

    actor = request.user if isinstance(request.user, User) else None
    detail = {"detail": refusal.detail} if refusal.detail else {}
    if actor is None and refusal.reason in FREE_REFUSALS:
        refusals.refused(request, REFUSED, refusal.reason, extra={**detail, **extra})
        return
    events.audit(
        REFUSED,
        request=request,
        actor=actor,
        outcome="denied",
        reason=refusal.reason,
        extra={**detail, **extra},
    )
