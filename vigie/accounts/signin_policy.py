"""Which sign-in methods each role may use (VIGIE_SIGNIN_METHODS), enforced on every request.

Four methods: `psc` (Pro Santé Connect, both factors at once), `passkey` (a passkey alone, with
user verification), `password_passkey` (the password, then a passkey) and `password_totp` (the
password, then an authenticator-app or recovery code). Whatever signs a session in records its
method with `record_method()`; `gate()`, run by deny-by-default on every verified request,
refuses a session whose method the user's role may not use. So a method cannot be reached
sideways (posting a code to /accounts/verify/ when the role allows passkeys only), and a
narrower policy applies to open sessions at their next click, not at their next sign-in.

The one exception keeps people from being locked out when the policy tightens: an account
whose role requires a passkey and that has none yet, signed in the old way, may do one thing,
register a passkey (`accounts:passkey_enrol`), and nothing else until it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts import events
from vigie.accounts.models import Passkey, PscDevice
from vigie.audit.tags import SIGNIN_METHOD_REFUSED

if TYPE_CHECKING:
    from vigie.accounts.models import User

PSC = "psc"
PASSKEY = "passkey"
PASSWORD_PASSKEY = "password_passkey"  # noqa: S105 (a method name, not a secret)
PASSWORD_TOTP = "password_totp"  # noqa: S105 (a method name, not a secret)
METHODS = (PSC, PASSKEY, PASSWORD_PASSKEY, PASSWORD_TOTP)
PASSKEY_METHODS = frozenset({PASSKEY, PASSWORD_PASSKEY})

# Session key: how this session proved who it is (one of METHODS).
SESSION_METHOD = "vigie_signin_method"

# What an account in transition (see the module docstring) may still reach.
ENROLMENT_VIEWS = frozenset(
    {
        "accounts:passkey_enrol",
        "accounts:passkey_register_options",
        "accounts:passkey_register",
        "accounts:logout",
        "set_language",
    }
)


def allowed_methods(role: str) -> frozenset[str]:
    # A role the setting does not know may use nothing (deny by default).
    return frozenset(settings.VIGIE_SIGNIN_METHODS.get(role, ()))


def allows(user: User, method: str) -> bool:
    return method in allowed_methods(user.role)


def any_role_allows(methods: frozenset[str]) -> bool:
    """True when some role may use one of `methods` (the login page offers it then)."""
    return any(set(chosen) & methods for chosen in settings.VIGIE_SIGNIN_METHODS.values())


def record_method(request: HttpRequest, method: str) -> None:
    """Called by whatever completes a sign-in (both factors), PSC included."""
    if method not in METHODS:
        raise ValueError(f"unknown sign-in method {method!r}")
    request.session[SESSION_METHOD] = method


def session_method(request: HttpRequest) -> str | None:
    value = request.session.get(SESSION_METHOD)
    if isinstance(value, str):
        return value
    # Sessions opened before methods were recorded: their device says how.
    device = getattr(request.user, "otp_device", None)
    if isinstance(device, TOTPDevice | StaticDevice):
        return PASSWORD_TOTP
    if isinstance(device, PscDevice):
        return PSC
    return None


def has_passkey(user: User) -> bool:
    found: bool = Passkey.objects.filter(user=user, confirmed=True).exists()
    return found


def needs_passkey_enrolment(user: User) -> bool:
    """True when the role could sign in with a passkey and the account has none yet."""
    return bool(allowed_methods(user.role) & PASSKEY_METHODS) and not has_passkey(user)


def method_after_passkey_enrolment(user: User) -> str:
    """The method a session has once it registered its first passkey (user verified)."""
    return PASSKEY if allows(user, PASSKEY) else PASSWORD_PASSKEY


def _view_name(request: HttpRequest) -> str | None:
    try:
        return resolve(request.path_info).view_name
    except Resolver404:
        return None


def gate(request: HttpRequest) -> HttpResponse | None:
    """For a verified session: None to go on, else the answer (enrolment or login)."""
    user = request.user
    method = session_method(request)
    role = getattr(user, "role", "")
    if method is not None and method in allowed_methods(role):
        return None
    if method in METHODS and needs_passkey_enrolment(user):  # type: ignore[arg-type]
        if _view_name(request) in ENROLMENT_VIEWS:
            return None
        return redirect("accounts:passkey_enrol")
    events.audit(
        SIGNIN_METHOD_REFUSED,
        request=request,
        actor=user,
        outcome="denied",
        reason="method_not_allowed",
        extra={"method": method or "unknown", "role": role},
    )
    logout(request)
    return redirect(settings.LOGIN_URL)


def refuse(request: HttpRequest, user: User, method: str) -> None:
    """Audit a sign-in refused because the role may not use `method` (before any session)."""
    events.audit(
        SIGNIN_METHOD_REFUSED,
        request=request,
        actor=user,
        outcome="denied",
        reason="method_not_allowed",
        extra={"method": method, "role": user.role},
    )


def after_password(request: HttpRequest, user: User) -> HttpResponse:
    """Where a session goes once the password is right: the second factor the role allows
    and the account has (a passkey first: it cannot be phished), or its enrolment.

    Returns the login page (the session ended, audited) when the password leads nowhere:
    the role signs in without a password, or with a passkey the account does not have and
    may not enrol after a password alone because it has another factor to prove first."""
    methods = allowed_methods(user.role)
    passkey = has_passkey(user)
    totp = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    if passkey and PASSWORD_PASSKEY in methods:
        return redirect("accounts:passkey_verify")
    if totp and (PASSWORD_TOTP in methods or (not passkey and methods & PASSKEY_METHODS)):
        # Where codes are no longer allowed too, for an account without a passkey: the code
        # proves the account before the gate leads it to register one (a password alone
        # never replaces a factor the account has).
        return redirect("accounts:verify")
    if not passkey and not totp:
        if PASSWORD_TOTP in methods:
            return redirect("accounts:enrol")
        if methods & PASSKEY_METHODS:
            return redirect("accounts:passkey_enrol")
    refuse(request, user, PASSWORD_PASSKEY if passkey else PASSWORD_TOTP)
    logout(request)
    return redirect(f"{reverse(settings.LOGIN_URL)}?method=passkey")
