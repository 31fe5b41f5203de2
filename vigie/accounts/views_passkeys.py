"""Passkey pages and the JSON steps their script (static/vigie/passkeys.js) posts to.

Each ceremony is two POSTs: `…/options/` gives the browser a challenge (bound to this
session), the other checks the browser's answer. Thin views: the rules are in passkeys.py
(ceremonies, counters, lockout) and signin_policy.py (who may use which method). Every answer
is JSON with a message the page can show: a refused passkey is never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_POST

from vigie.accounts import events, otp, passkeys, signin_policy
from vigie.accounts.deny_by_default import is_verified
from vigie.accounts.models import User
from vigie.accounts.reauth import is_second_factor_fresh, require_fresh_second_factor
from vigie.accounts.sessions import NEXT_URL, complete_second_factor, start_password_session

Purpose = passkeys.Purpose
MANAGE = "manage"
ENROL = "enrol"


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user


def _safe(request: HttpRequest, candidate: object) -> str | None:
    if isinstance(candidate, str) and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return None


def _after_login(request: HttpRequest, posted: object = None) -> str:
    stored = request.session.pop(NEXT_URL, None)
    return (
        _safe(request, posted) or _safe(request, stored) or resolve_url(settings.LOGIN_REDIRECT_URL)
    )


def _error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _body(request: HttpRequest) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RequestDataTooBig):
        return None
    return data if isinstance(data, dict) else None


def _options(build: Any) -> HttpResponse:
    try:
        return HttpResponse(build(), content_type="application/json")
    except passkeys.PasskeyError:
        return _error(_("Passkeys are not available on this address of the portal."), 409)


def _refused(error: passkeys.PasskeyError) -> JsonResponse:
    if isinstance(error, passkeys.PasskeyLocked):
        response = _error(
            _("Too many attempts: wait a few minutes, then try again."),
            429,
            redirect=reverse("accounts:locked"),
        )
        response["Retry-After"] = str(error.retry_after)
        return response
    if error.reason == "counter_not_increasing":
        return _error(
            _(
                "This passkey was refused: it looks copied to another device. It is revoked "
                "and IT was alerted. Sign in another way and register a new passkey."
            ),
            403,
        )
    # One message for every other refusal: nothing to learn from it but "not this one".
    return _error(_("This passkey was not accepted. Try again, or sign in another way."), 400)


def _ceremony(request: HttpRequest, step: Any) -> JsonResponse:
    """Run `step(data)` on the posted JSON; its passkey refusals become JSON answers."""
    data = _body(request)
    if data is None or not isinstance(data.get("credential"), dict):
        return _error(_("The browser's answer could not be read."), 400)
    try:
        answer: JsonResponse = step(data)
    except passkeys.PasskeyError as error:
        return _refused(error)
    return answer


# --- a passkey alone, from the login page (public) ---


@csrf_protect
@never_cache
@require_POST
def login_options_view(request: HttpRequest) -> HttpResponse:
    if not signin_policy.any_role_allows(frozenset({signin_policy.PASSKEY})):
        return _error(_("Signing in with a passkey alone is not enabled."), 404)
    return _options(lambda: passkeys.authentication_options(request, Purpose.LOGIN))


@csrf_protect
@never_cache
@require_POST
def login_view(request: HttpRequest) -> JsonResponse:
    def step(data: dict[str, Any]) -> JsonResponse:
        passkey = passkeys.authenticate(request, Purpose.LOGIN, data["credential"])
        user: User = passkey.user
        if not signin_policy.allows(user, signin_policy.PASSKEY):
            signin_policy.refuse(request, user, signin_policy.PASSKEY)
            return _error(_("Your account may not sign in with a passkey alone."), 403)
        start_password_session(request, user)
        complete_second_factor(request, passkey, signin_policy.PASSKEY)
        return JsonResponse({"redirect": _after_login(request, data.get("next"))})

    return _ceremony(request, step)


# --- a passkey after the password (half logged in) ---


@never_cache
@require_GET
def verify_page_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if is_verified(request):
        return redirect(_after_login(request))
    if not passkeys.active_passkeys(user):
        return signin_policy.after_password(request, user)
    context = {"has_code": otp.confirmed_totp_device(user) is not None}
    return render(request, "accounts/passkey_verify.html", context)


@csrf_protect
@never_cache
@require_POST
def second_factor_options_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if is_verified(request) or not signin_policy.allows(user, signin_policy.PASSWORD_PASSKEY):
        return _error(_("A passkey is not a second factor this account may use."), 403)
    return _options(lambda: passkeys.authentication_options(request, Purpose.SECOND_FACTOR, user))


@csrf_protect
@never_cache
@require_POST
def second_factor_view(request: HttpRequest) -> JsonResponse:
    user = _user(request)
    if is_verified(request) or not signin_policy.allows(user, signin_policy.PASSWORD_PASSKEY):
        return _error(_("A passkey is not a second factor this account may use."), 403)

    def step(data: dict[str, Any]) -> JsonResponse:
        passkey = passkeys.authenticate(
            request, Purpose.SECOND_FACTOR, data["credential"], user=user
        )
        complete_second_factor(request, passkey, signin_policy.PASSWORD_PASSKEY)
        return JsonResponse({"redirect": _after_login(request)})

    return _ceremony(request, step)


# --- re-authentication before a sensitive action (verified) ---


@csrf_protect
@never_cache
@require_POST
def reauth_options_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    return _options(lambda: passkeys.authentication_options(request, Purpose.REAUTH, user))


@csrf_protect
@never_cache
@require_POST
def reauth_view(request: HttpRequest) -> JsonResponse:
    user = _user(request)

    def step(data: dict[str, Any]) -> JsonResponse:
        passkeys.authenticate(request, Purpose.REAUTH, data["credential"], user=user)
        otp.mark_second_factor_fresh(request)
        events.audit(
            events.MFA_SUCCESS,
            request=request,
            actor=user,
            extra={"purpose": "reauth", "method": "passkey"},
        )
        return JsonResponse({"redirect": _safe(request, data.get("next")) or "/"})

    return _ceremony(request, step)


# --- registration: from the passkeys page, or as the account's enrolment ---


def _registration_mode(request: HttpRequest, user: User) -> str | None:
    """MANAGE (a signed-in account adds one), ENROL (its first, which completes or repairs
    the sign-in), or None (not allowed)."""
    if is_verified(request):
        method = signin_policy.session_method(request)
        if method is not None and signin_policy.allows(user, method):
            return MANAGE
        return ENROL if signin_policy.needs_passkey_enrolment(user) else None
    if otp.has_confirmed_factor(user):
        return None
    allowed = signin_policy.allowed_methods(user.role) & signin_policy.PASSKEY_METHODS
    return ENROL if allowed else None


@never_cache
@require_GET
def enrol_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if _registration_mode(request, user) != ENROL:
        if is_verified(request):
            return redirect(_after_login(request))
        return signin_policy.after_password(request, user)
    return render(request, "accounts/passkey_enrol.html", {"transition": is_verified(request)})


def _may_register(request: HttpRequest, user: User) -> tuple[str | None, JsonResponse | None]:
    mode = _registration_mode(request, user)
    if mode is None:
        return None, _error(_("This account may not register a passkey now."), 403)
    if mode == MANAGE and not is_second_factor_fresh(request):
        reauth = f"{reverse('accounts:reauth')}?next={reverse('accounts:passkeys')}"
        return None, _error(_("Confirm it is you first."), 403, redirect=reauth)
    return mode, None


@csrf_protect
@never_cache
@require_POST
def register_options_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    _mode, refusal = _may_register(request, user)
    if refusal is not None:
        return refusal
    return _options(lambda: passkeys.registration_options(request, user))


@csrf_protect
@never_cache
@require_POST
def register_view(request: HttpRequest) -> JsonResponse:
    user = _user(request)
    mode, refusal = _may_register(request, user)
    if refusal is not None:
        return refusal

    def step(data: dict[str, Any]) -> JsonResponse:
        name = data.get("name") if isinstance(data.get("name"), str) else ""
        passkey = passkeys.register(request, user, data["credential"], str(name))
        if mode == MANAGE:
            messages.success(
                request, _("Your passkey “%(name)s” is registered.") % {"name": passkey.name}
            )
            return JsonResponse({"redirect": reverse("accounts:passkeys")})
        # The first passkey, registered with user verification: the sign-in is complete.
        complete_second_factor(request, passkey, signin_policy.method_after_passkey_enrolment(user))
        return JsonResponse({"redirect": _after_login(request)})

    return _ceremony(request, step)


# --- the account's passkeys (verified, recent second factor) ---


@never_cache
@require_GET
@require_fresh_second_factor
def manage_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    context = {
        "passkeys": passkeys.active_passkeys(user),
        "available": passkeys.available(),
    }
    return render(request, "accounts/passkeys.html", context)


@csrf_protect
@never_cache
@require_POST
@require_fresh_second_factor
def revoke_view(request: HttpRequest, passkey_id: int) -> HttpResponse:
    user = _user(request)
    if not passkeys.revoke(request, user, passkey_id):
        # Not one of this account's active passkeys: the same answer whatever the reason.
        return HttpResponse(status=404)
    messages.success(request, _("The passkey is revoked: it no longer opens your account."))
    return redirect("accounts:passkeys")
