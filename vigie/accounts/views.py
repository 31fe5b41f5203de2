"""Login in two steps (password, then TOTP), enrolment, recovery codes, re-auth, logout.

State between steps lives in the server-side session only. Each view is thin: the rules are
in otp.py (codes), lockout.py (every password and code counted before it is checked) and
sessions.py (session ids, stamps).
"""

from __future__ import annotations

from base64 import b32encode
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, logout
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp.oath import TOTP

from vigie.accounts import credentials, events, invitations, lockout, otp, signin_policy
from vigie.accounts.deny_by_default import is_verified
from vigie.accounts.forms import (
    InvitationForm,
    LoginForm,
    PasswordChangeForm,
    RecoveryCodeForm,
    TotpForm,
)
from vigie.accounts.lockout import locked_page
from vigie.accounts.models import User
from vigie.accounts.reauth import require_fresh_second_factor
from vigie.accounts.sessions import NEXT_URL, complete_second_factor, start_password_session

if TYPE_CHECKING:
    from django_otp.models import Device
    from django_otp.plugins.otp_totp.models import TOTPDevice

# Recovery codes wait here between enrolment and the page that shows them, exactly once.
_FRESH_RECOVERY_CODES = "vigie_recovery_codes_once"


def _safe_next(request: HttpRequest, candidate: str | None) -> str | None:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return None


def _after_login_url(request: HttpRequest) -> str:
    stored = request.session.pop(NEXT_URL, None)
    return _safe_next(request, stored if isinstance(stored, str) else None) or resolve_url(
        settings.LOGIN_REDIRECT_URL
    )


def _current_user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):
        # Deny-by-default lets only logged-in users reach these views; never guess otherwise.
        raise PermissionDenied
    return user


def _locked_out(
    request: HttpRequest, retry_after: int, *, username: str, step: str
) -> HttpResponse:
    # The identifier is recorded as typed (normalised) even if no such account exists: the
    # audit trail must show attacks on guessed names too.
    events.audit(
        events.LOGIN_LOCKED,
        request=request,
        outcome="denied",
        reason="too_many_failures",
        extra={"username": username, "step": step},
    )
    # The lockout ends this login attempt entirely: the half-open session is discarded.
    request.session.flush()
    return locked_page(request, retry_after)


def _refused(
    request: HttpRequest,
    refusal: lockout.Refused,
    username: str,
    form_page: Callable[[str], HttpResponse],
) -> HttpResponse:
    """The answer to a password attempt refused before checking: a hard lock (the address)
    ends the attempt on the locked page; the account's delay is only a wait, so the form
    comes back (`form_page`, given the message to show) as 429 with Retry-After."""
    if not refusal.delayed:
        return _locked_out(request, refusal.retry_after, username=username, step="password")
    events.audit(
        events.LOGIN_DELAYED,
        request=request,
        outcome="denied",
        reason="too_many_failures",
        extra={"username": username, "retry_after": refusal.retry_after},
    )
    message = ngettext(
        "Too many failed attempts for this identifier: wait %(seconds)d second, then try again.",
        "Too many failed attempts for this identifier: wait %(seconds)d seconds, then try again.",
        refusal.retry_after,
    ) % {"seconds": refusal.retry_after}
    response = form_page(message)
    response.status_code = 429
    response["Retry-After"] = str(refusal.retry_after)
    return response


def _reserve_password(
    request: HttpRequest, username: str, form_page: Callable[[str], HttpResponse]
) -> lockout.Reservation | HttpResponse:
    """Count one password attempt on `username` before anything is checked (see lockout.py):
    its reservation, or the answer to send instead (see `_refused`).

    A counted attempt is also noted here, so no caller can forget it: attempts going on
    alert IT and are audited (one alert per identifier), whether they are passwords at
    login or invitation codes, which take a new account before its owner does."""
    try:
        reservation = lockout.reserve_password(username, lockout.client_ip(request))
    except lockout.Refused as refusal:
        return _refused(request, refusal, username, form_page)
    lockout.note_password_attempt(reservation, username, request)
    return reservation


def _login_page(request: HttpRequest, form: LoginForm, error: str | None) -> HttpResponse:
    # The target survives a failed attempt: it travels in the form, not in the action URL.
    requested = request.POST.get("next") or request.GET.get("next")
    context = {
        "form": form,
        "error": error,
        "next": _safe_next(request, requested),
        # Set by deny-by-default when the session policy has just ended the session: the
        # person is told why they are here (only a message; it grants and proves nothing).
        "expired": request.method == "GET" and request.GET.get("expired") == "1",
    }
    return render(request, "accounts/login.html", context)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if is_verified(request):
        if request.GET.get("expired") == "1":
            # The page thought the session had expired, but another tab kept it alive: home,
            # rather than reopening (and recording) a record that nobody asked to see again.
            return redirect(settings.LOGIN_REDIRECT_URL)
        return redirect(_safe_next(request, request.GET.get("next")) or settings.LOGIN_REDIRECT_URL)
    if request.method == "GET" and request.user.is_authenticated:
        return redirect("accounts:verify")
    form = LoginForm(request.POST if request.method == "POST" else None)
    error = None
    if request.method == "POST" and form.is_valid():
        username = User.normalize_username(form.cleaned_data["username"])
        reservation = _reserve_password(
            request, username, lambda message: _login_page(request, form, message)
        )
        if isinstance(reservation, HttpResponse):
            return reservation
        user = authenticate(request, username=username, password=form.cleaned_data["password"])
        if not isinstance(user, User):
            events.audit(
                events.LOGIN_FAILURE,
                request=request,
                outcome="failure",
                reason="bad_credentials",
                extra={"username": username},
            )
            # One message for an unknown identifier and a wrong password: no probing.
            error = _("The identifier or the password is incorrect.")
        else:
            reservation.succeeded()
            next_url = _safe_next(request, request.POST.get("next"))
            if next_url:
                request.session[NEXT_URL] = next_url
            start_password_session(request, user)
            # The password step only: "mfa.success" follows when the second factor is proved.
            events.audit(
                events.LOGIN_SUCCESS, request=request, actor=user, extra={"step": "password"}
            )
            return signin_policy.after_password(request, user)
    return _login_page(request, form, error)


@sensitive_post_parameters("code", "password", "password_again")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def invitation_view(request: HttpRequest) -> HttpResponse:
    """Spend an invitation: choose a password, then enrol an authenticator."""
    form = InvitationForm(request.POST if request.method == "POST" else None)
    error = None
    if request.method == "POST" and form.is_valid():
        username = User.normalize_username(form.cleaned_data["username"])
        # Counted like a password, before the code is looked at.
        reservation = _reserve_password(
            request,
            username,
            lambda message: render(
                request, "accounts/invitation.html", {"form": form, "error": message}
            ),
        )
        if isinstance(reservation, HttpResponse):
            return reservation
        try:
            user = invitations.redeem(
                username, form.cleaned_data["code"], form.cleaned_data["password"], request=request
            )
        except invitations.InvitationError:
            events.audit(
                invitations.REFUSED,
                request=request,
                outcome="failure",
                reason="bad_invitation",
                extra={"username": username},
            )
            # One message for an unknown identifier, a wrong, used or expired code.
            error = _(
                "This invitation is not valid: check the identifier and the code, or ask "
                "for a new invitation (a code works once, for 72 hours)."
            )
        except ValidationError as exc:
            # The code was right (redeem checks it first): not a guess.
            reservation.succeeded()
            form.add_error("password", exc)
        else:
            reservation.succeeded()
            start_password_session(request, user)
            return signin_policy.after_password(request, user)
    return render(request, "accounts/invitation.html", {"form": form, "error": error})


def _demo_codes(user: User) -> list[str]:
    """Current codes of the user's authenticator, for the demo only (no phone needed)."""
    if settings.VIGIE_MODE != "demo":
        return []
    device: TOTPDevice | None = otp.confirmed_totp_device(user)
    if device is None:
        return []
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return [f"{totp.token():0{device.digits}d}"]


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def verify_view(request: HttpRequest) -> HttpResponse:
    user = _current_user(request)
    if is_verified(request):
        return redirect(_after_login_url(request))
    if otp.confirmed_totp_device(user) is None:
        return signin_policy.after_password(request, user)
    if request.method != "POST":
        return _code_page(request, user, "accounts/verify.html")
    try:
        device = _posted_code_device(request, user, purpose="")
    except otp.LockedOut as locked:
        return _locked_out(
            request, locked.retry_after, username=user.username, step="second_factor"
        )
    if device is not None:
        complete_second_factor(request, device)
        return redirect(_after_login_url(request))
    return _code_page(request, user, "accounts/verify.html", failed=True)


def _posted_code_device(request: HttpRequest, user: User, *, purpose: str) -> Device | None:
    """The device that accepts the code this POST carries (an authenticator's, or a recovery
    code when `kind` says so), or None; a wrong code is audited with `purpose` as reason.

    One check for the second factor at sign-in and at re-authentication, so that the two
    cannot drift apart in what they accept. Raises otp.LockedOut (the attempt is counted)."""
    form: TotpForm | RecoveryCodeForm = (
        RecoveryCodeForm(request.POST)
        if request.POST.get("kind") == "recovery"
        else TotpForm(request.POST)
    )
    if not form.is_valid():
        return None
    device = otp.match_device(user, form.cleaned_data["code"], request=request)
    if device is None:
        events.audit(
            events.MFA_FAILURE, request=request, actor=user, outcome="failure", reason=purpose
        )
    return device


def _code_page(
    request: HttpRequest, user: User, template: str, *, failed: bool = False, **extra: Any
) -> HttpResponse:
    """The page asking for a second-factor code; `failed` after a code was refused."""
    error = _("This code is not valid. Codes change every 30 seconds and work only once.")
    context = {
        "totp_form": TotpForm(),
        "recovery_form": RecoveryCodeForm(),
        "error": error if failed else None,
        "demo_codes": _demo_codes(user),
        **extra,
    }
    return render(request, template, context)


def _qr_svg(device: TOTPDevice) -> str:
    # Inline SVG made of paths with presentation attributes: no script, no style attribute,
    # nothing the CSP would have to allow.
    return str(
        segno.make(device.config_url, error="m").svg_inline(
            scale=5, light="#fff", title=_("QR code of your authentication key")
        )
    )


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def enrol_view(request: HttpRequest) -> HttpResponse:
    user = _current_user(request)
    if is_verified(request):
        return redirect(_after_login_url(request))
    if otp.has_confirmed_factor(user) or not signin_policy.allows(user, "password_totp"):
        # Enrolment is for a first login only; otherwise the password alone could replace
        # the account's authenticator or passkey (and only where the role may use codes).
        return signin_policy.after_password(request, user)
    device = otp.pending_totp_device(user)
    form = TotpForm(request.POST if request.method == "POST" else None)
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            confirmed = otp.confirm_pending_code(
                user, device, form.cleaned_data["code"], request=request
            )
        except otp.LockedOut as locked:
            return _locked_out(
                request, locked.retry_after, username=user.username, step="enrolment"
            )
        if confirmed:
            codes = otp.confirm_enrolment(user, device)
            events.audit(events.MFA_ENROLLED, request=request, actor=user)
            complete_second_factor(request, device)
            request.session[_FRESH_RECOVERY_CODES] = codes
            return redirect("accounts:recovery_codes")
        events.audit(
            events.MFA_FAILURE, request=request, actor=user, outcome="failure", reason="enrolment"
        )
        error = _("This code is not valid. Check the time on your phone and try the next code.")
    secret = b32encode(device.bin_key).decode("ascii")
    context = {
        "form": form,
        "error": error,
        "qr_svg": _qr_svg(device),
        # Grouped by four for reading aloud or typing into an app by hand.
        "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
    }
    return render(request, "accounts/enrol.html", context)


@never_cache
@require_GET
def recovery_codes_view(request: HttpRequest) -> HttpResponse:
    """Shows freshly issued recovery codes once; a reload shows that they are gone."""
    codes = request.session.pop(_FRESH_RECOVERY_CODES, None)
    context: dict[str, Any] = {
        "codes": codes if isinstance(codes, list) else [],
        "next_url": _after_login_url(request),
    }
    return render(request, "accounts/recovery_codes.html", context)


@csrf_protect
@never_cache
@require_POST
@require_fresh_second_factor
def new_recovery_codes_view(request: HttpRequest) -> HttpResponse:
    """Replaces all recovery codes (the old ones stop working) and shows the new ones."""
    request.session[_FRESH_RECOVERY_CODES] = credentials.renew_recovery_codes(
        request, _current_user(request)
    )
    return redirect("accounts:recovery_codes")


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def reauth_view(request: HttpRequest) -> HttpResponse:
    user = _current_user(request)
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next")) or "/"
    if request.method != "POST":
        return _code_page(request, user, "accounts/reauth.html", next=next_url)
    try:
        device = _posted_code_device(request, user, purpose="reauth")
    except otp.LockedOut as locked:
        response = _locked_out(request, locked.retry_after, username=user.username, step="reauth")
        logout(request)
        return response
    if device is not None:
        otp.mark_second_factor_fresh(request)
        events.audit(events.MFA_SUCCESS, request=request, actor=user, extra={"purpose": "reauth"})
        if otp.is_recovery_device(device):
            events.audit(events.MFA_RECOVERY_CODE_USED, request=request, actor=user)
        return HttpResponseRedirect(next_url)
    return _code_page(request, user, "accounts/reauth.html", failed=True, next=next_url)


@csrf_protect
@never_cache
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    # logout() flushes the server-side session: the cookie, wherever copied, is dead now.
    # The audit event is written by the user_logged_out receiver (admin logout included).
    logout(request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


@never_cache
@require_GET
def locked_view(request: HttpRequest) -> HttpResponse:
    return locked_page(request)


@sensitive_post_parameters("current_password", "password", "password_again")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
@require_fresh_second_factor
def password_change_view(request: HttpRequest) -> HttpResponse:
    """The signed-in user's own password: the current one, after a fresh second factor."""
    user = _current_user(request)
    form = PasswordChangeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            credentials.change_password(
                request, user, form.cleaned_data["current_password"], form.cleaned_data["password"]
            )
        except lockout.Refused as refusal:
            # Counted like a password at login, before it is checked: a hard lock (the
            # address) ends the session; the account's delay is only a wait.
            response = _refused(
                request,
                refusal,
                user.get_username(),
                lambda message: render(
                    request, "accounts/password_change.html", {"form": form, "error": message}
                ),
            )
            if not refusal.delayed:
                logout(request)
            return response
        except credentials.WrongCurrentPassword:
            form.add_error("current_password", _("This is not your current password."))
        except ValidationError as exc:
            form.add_error("password", exc)
        else:
            messages.success(
                request,
                _("Your password was changed. Your other sessions, on any device, were ended."),
            )
            return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/password_change.html", {"form": form})
