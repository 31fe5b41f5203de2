"""Deny by default: every URL needs a logged-in, second-factor-verified session.

The few exceptions are listed here by URL name, in one place, so a review sees them all:
- anyone: the login page, the invitation page (its one-time code is the credential), the
  lockout page, health, robots.txt, the language switch,
  static assets, and Pro Santé Connect's start, callback and back-channel logout (each
  checks the provider's signed tokens itself);
- after the password, before the second factor ("half logged in"): additionally the
  second-factor, enrolment and logout steps, and nothing else.

Anything else, including URLs that match no route, sends an anonymous visitor to the login
page: an outsider cannot even tell which paths exist. `test_deny_by_default` walks the whole
URL configuration, so a route added later is covered without anyone remembering to.

A view that authenticates its callers itself (an API key, a signed token) can be marked with
`@authenticates_itself`; it is then reached without a session and must refuse on its own
(401/403/404), which the same walking test checks for every route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.urls import Resolver404, ResolverMatch, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from vigie.accounts import signin_policy
from vigie.accounts.reauth import is_second_factor_fresh, reauth_redirect
from vigie.lib.headers import static_prefix

PUBLIC_VIEWS = frozenset(
    {
        "accounts:login",
        "accounts:invitation",
        "accounts:locked",
        "health",
        "robots_txt",
        "set_language",
        "fhir:metadata",
        # Pro Santé Connect: the way in for a doctor who has no session yet (start, and the
        # provider's redirect back, whose state, nonce and signed ID token are checked), and
        # the provider's server-to-server back-channel logout, whose credential is the
        # signed logout token (refused with 400 otherwise; it can only end sessions).
        "accounts:psc_start",
        "accounts:psc_callback",
        "accounts:psc_backchannel_logout",
        # A passkey alone: both steps are the sign-in itself (counted like a password).
        "accounts:passkey_login_options",
        "accounts:passkey_login",
    }
)
SECOND_FACTOR_VIEWS = frozenset(
    {
        "accounts:verify",
        "accounts:enrol",
        "accounts:logout",
        # A passkey after the password, or the account's first one (views_passkeys.py
        # refuses an account that already has a factor to prove instead).
        "accounts:passkey_verify",
        "accounts:passkey_second_factor_options",
        "accounts:passkey_second_factor",
        "accounts:passkey_enrol",
        "accounts:passkey_register_options",
        "accounts:passkey_register",
    }
)
# Machine clients get a status, not a login form they cannot fill in.
API_PREFIXES = ("/api/", "/fhir/")

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


def authenticates_itself(view: ViewFunc) -> ViewFunc:
    """Mark a view that checks its own credentials (API key...) instead of a session."""
    view.vigie_authenticates_itself = True  # type: ignore[attr-defined]
    return view


def is_verified(request: HttpRequest) -> bool:
    user = request.user
    check = getattr(user, "is_verified", None)
    return bool(user.is_authenticated and callable(check) and check())


def _match(request: HttpRequest) -> ResolverMatch | None:
    try:
        return resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
    except Resolver404:
        return None


def login_redirect(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="vigie"'
        return response
    url = reverse(settings.LOGIN_URL)
    target = request.get_full_path()
    query: dict[str, str] = {}
    # Set by the session policy when it has just ended this session: the login page says so.
    if getattr(request, "vigie_session_expired", False):
        query["expired"] = "1"
    # Only a same-site path comes back after login, and only for a page (a GET): a POST
    # cannot be replayed and "//other.example" must never become a redirect target.
    if request.method in ("GET", "HEAD") and url_has_allowed_host_and_scheme(
        target, allowed_hosts=None
    ):
        query["next"] = target
    if query:
        url = f"{url}?{urlencode(query)}"
    return HttpResponseRedirect(url)


class DenyByDefaultMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        if request.method in ("GET", "HEAD") and request.path.startswith(static_prefix()):
            return None
        match = _match(request)
        name = match.view_name if match is not None else None
        if name in PUBLIC_VIEWS:
            return None
        if match is not None and getattr(match.func, "vigie_authenticates_itself", False):
            return None
        if name == "admin:login":
            # The admin's own login form knows no second factor; it is never used.
            return HttpResponseForbidden() if is_verified(request) else login_redirect(request)
        if is_verified(request):
            # A session opened by a method the user's role may not use (VIGIE_SIGNIN_METHODS)
            # goes no further than registering a passkey, or back to the login page.
            method_refusal = signin_policy.gate(request)
            if method_refusal is not None:
                return method_refusal
            # The admin can change accounts and care relationships: it needs a recent
            # second-factor proof, like any other sensitive action.
            in_admin = match is not None and "admin" in match.namespaces
            if in_admin and not is_second_factor_fresh(request):
                return reauth_redirect(request)
            return None
        if request.user.is_authenticated and name in SECOND_FACTOR_VIEWS:
            return None
        return login_redirect(request)
