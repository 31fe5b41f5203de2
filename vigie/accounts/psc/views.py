"""Pro Santé Connect over HTTP: start, callback, back-channel logout. Thin: the rules are in
client (protocol), identity (who, which account), signin (the session) and logout."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from vigie.accounts import events
from vigie.accounts.deny_by_default import is_verified
from vigie.accounts.models import User
from vigie.accounts.psc import client, identity, logout, signin
from vigie.accounts.psc.client import Refused
from vigie.audit import refusals

LOGIN = "login"
REAUTH = "reauth"
# The re-authentication asks PSC for a login at most this old (with prompt=login), and the
# ID token's auth_time must show it.
REAUTH_MAX_AGE_SECONDS = 60
BACKCHANNEL_LOGOUT = "psc.backchannel_logout"
BOUNCED = "continue"


def _enabled() -> None:
    if not settings.VIGIE_PSC_ENABLED:
        raise Http404


def _safe_next(request: HttpRequest, candidate: Any) -> str | None:
    if isinstance(candidate, str) and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return None


def _refusal_page(request: HttpRequest, refusal: Refused, **extra: Any) -> HttpResponse:
    signin.refused(request, refusal, **extra)
    if refusal.reason == "unknown_account":
        message = _(
            "Pro Santé Connect identified you, but no active account of this portal carries "
            "your RPPS number. No account is created from a sign-in: ask the clinic's IT "
            "team to record your RPPS number on your account."
        )
        status = 403
    elif refusal.reason == "provider_unreachable":
        message = _("Pro Santé Connect cannot be reached at the moment. Try again later.")
        status = 502
    else:
        message = _(
            "The answer from Pro Santé Connect could not be verified, so nobody was signed "
            "in. Start again from the login page; if this keeps happening, tell the "
            "clinic's IT team (the attempt was recorded)."
        )
        status = 400
    return render(request, "accounts/psc_refused.html", {"message": message}, status=status)


@never_cache
@require_GET
def start_view(request: HttpRequest) -> HttpResponse:
    _enabled()
    purpose = REAUTH if request.GET.get("purpose") == REAUTH else LOGIN
    next_url = _safe_next(request, request.GET.get("next"))
    params: dict[str, Any] = {"purpose": purpose, "next": next_url or ""}
    if purpose == REAUTH:
        if not is_verified(request):
            return redirect(settings.LOGIN_URL)
        params["query"] = {"prompt": "login", "max_age": REAUTH_MAX_AGE_SECONDS}
        params["max_age"] = REAUTH_MAX_AGE_SECONDS
    redirect_uri = request.build_absolute_uri(reverse("accounts:psc_callback"))
    try:
        url = client.start(request, redirect_uri, **params)
    except Refused as refusal:
        return _refusal_page(request, refusal, step="start")
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def callback_view(request: HttpRequest) -> HttpResponse:
    _enabled()
    if settings.SESSION_COOKIE_NAME not in request.COOKIES and request.GET.get(BOUNCED) != "1":
        # The session cookie is SameSite=Strict: the browser leaves it out of a navigation
        # that comes from PSC's site, and the flow's state lives in that session. A page of
        # ours that moves on to the same URL is a same-site navigation, which carries it.
        query = urlencode({**request.GET.dict(), BOUNCED: "1"})
        return render(request, "accounts/psc_continue.html", {"target": f"{request.path}?{query}"})
    flow = client.pending(request, request.GET.get("state"))
    try:
        if flow is None:
            # Unknown or spent: a forged callback, a replayed one, or another browser's.
            raise Refused("state_mismatch")
        token = client.finish(request)
        claims = dict(token["userinfo"])
        wanted = settings.VIGIE_PSC_ACR_VALUES.split()
        if wanted and claims.get("acr") not in wanted:
            raise Refused("bad_acr", str(claims.get("acr", ""))[:50])
        found = identity.fetch_identity(token)
    except Refused as refusal:
        return _refusal_page(request, refusal)
    user = identity.account_for(found)
    try:
        if user is None:
            raise Refused("unknown_account")
        if flow.get("purpose") == REAUTH:
            return _reauthenticated(request, user, found, claims, flow)
    except Refused as refusal:
        return _refusal_page(request, refusal, **found.summary())
    signin.sign_in(request, user, found, claims)
    return HttpResponseRedirect(
        _safe_next(request, flow.get("next")) or settings.LOGIN_REDIRECT_URL
    )


def _reauthenticated(
    request: HttpRequest,
    user: User,
    found: identity.PscIdentity,
    claims: dict[str, Any],
    flow: dict[str, Any],
) -> HttpResponse:
    signin.check_fresh(claims, int(flow.get("max_age") or REAUTH_MAX_AGE_SECONDS))
    if not is_verified(request) or request.user.pk != user.pk:
        # Another professional's card cannot refresh this session.
        raise Refused("reauth_other_account")
    signin.confirm_again(request, user, found)
    return HttpResponseRedirect(_safe_next(request, flow.get("next")) or "/")


@csrf_exempt  # the provider's server calls it; the signed logout token is the credential
@never_cache
@require_POST
def backchannel_logout_view(request: HttpRequest) -> HttpResponse:
    _enabled()
    # Anyone can post here: refusals are counted per source and minute (one audit event per
    # source, minute and reason), and a source past the limit is not even heard.
    wait = refusals.throttled(request, BACKCHANNEL_LOGOUT)
    if wait is not None:
        response = HttpResponse("too many requests\n", status=429, content_type="text/plain")
        response["Retry-After"] = str(wait)
        return response
    try:
        claims = logout.verify_logout_token(request.POST.get("logout_token", ""))
    except Refused as refusal:
        refusals.refused(
            request,
            BACKCHANNEL_LOGOUT,
            refusal.reason,
            extra={"detail": refusal.detail} if refusal.detail else {},
        )
        # The specification's answer to a logout token that fails a check.
        return HttpResponse("invalid logout token\n", status=400, content_type="text/plain")
    ended = logout.end_sessions(claims)
    target = {"sid": str(claims.get("sid", ""))[:255], "psc_sub": str(claims.get("sub", ""))[:255]}
    users = {row.user_id: row.user for row in ended}
    for user in users.values():
        count = sum(1 for row in ended if row.user_id == user.pk)
        events.audit(
            BACKCHANNEL_LOGOUT, request=request, actor=user, extra={**target, "sessions": count}
        )
    if not users:
        events.audit(BACKCHANNEL_LOGOUT, request=request, extra={**target, "sessions": 0})
    return HttpResponse("", status=200, content_type="text/plain")
