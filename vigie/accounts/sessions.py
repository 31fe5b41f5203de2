"""Session lifecycle: start after the password, upgrade after the second factor, expire.

Every step that changes what a session may do gets a new session id, so a cookie observed
before (on the login page, between the two factors) never inherits the new rights.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import django_otp
from django.conf import settings
from django.contrib.auth import login
from django.http import HttpRequest

from vigie.accounts import events, lockout, signin_policy
from vigie.accounts.otp import is_recovery_device, mark_second_factor_fresh

if TYPE_CHECKING:
    from vigie.accounts.models import User

AUTH_AT = "vigie_auth_at"  # when the password was accepted (absolute limit)
LAST_SEEN = "vigie_last_seen"  # last request (idle limit)
NEXT_URL = "vigie_next"  # where to go once both factors are proved
# Touching the session on every request would write it on every request; a 30 s resolution
# is plenty for a 15-minute idle limit.
_LAST_SEEN_RESOLUTION = 30.0


def now() -> float:
    # One place to read the clock, so tests can move it.
    return time.time()


def start_password_session(request: HttpRequest, user: User) -> None:
    """The password is right: a fresh, half-logged-in session (second factor still due)."""
    next_url = request.session.get(NEXT_URL)
    # Whatever this browser had before (even another account's verified session) is dropped,
    # not carried over: login() alone keeps data when the same user logs in again.
    request.session.flush()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    stamp = now()
    request.session[AUTH_AT] = stamp
    request.session[LAST_SEEN] = stamp
    if next_url:
        request.session[NEXT_URL] = next_url


def complete_second_factor(request: HttpRequest, device: Any, method: str | None = None) -> None:
    """The second factor is right: the session becomes fully logged in, under a new id.

    `method` is the sign-in method the policy judges (signin_policy); a code by default."""
    user = request.user
    django_otp.login(request, device)
    request.session.cycle_key()
    mark_second_factor_fresh(request)
    signin_policy.record_method(request, method or signin_policy.PASSWORD_TOTP)
    request.session[LAST_SEEN] = now()
    # Both factors proved: the account's earlier failures are forgiven (not the address's
    # failures against other accounts, which stay on their own rows).
    lockout.forget_account(user.get_username())
    events.audit(
        events.MFA_SUCCESS,
        request=request,
        actor=user,
        extra={"method": _audited_method(device, method)},
    )
    if is_recovery_device(device):
        events.audit(events.MFA_RECOVERY_CODE_USED, request=request, actor=user)


def _audited_method(device: Any, method: str | None) -> str:
    if method is not None and method != signin_policy.PASSWORD_TOTP:
        return method
    return "recovery_code" if is_recovery_device(device) else "totp"


def expiry_reason(request: HttpRequest) -> str | None:
    """Why this authenticated session must end now ("idle" or "absolute"), or None."""
    session = request.session
    current = now()
    started = session.get(AUTH_AT)
    last = session.get(LAST_SEEN)
    if not isinstance(started, int | float) or not isinstance(last, int | float):
        # Only our login view starts sessions, and it sets both stamps; a session without
        # them was not made by it, so it gets no benefit of the doubt.
        return "unknown"
    if current - started > settings.VIGIE_SESSION_ABSOLUTE_HOURS * 3600:
        return "absolute"
    if current - last > settings.VIGIE_SESSION_IDLE_MINUTES * 60:
        return "idle"
    return None


def touch(request: HttpRequest) -> None:
    last = request.session.get(LAST_SEEN)
    current = now()
    if not isinstance(last, int | float) or current - last >= _LAST_SEEN_RESOLUTION:
        request.session[LAST_SEEN] = current
