"""Session policy: idle and absolute timeouts, enforced server-side on every request."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject
from django_otp.middleware import OTPMiddleware

from vigie.accounts import events
from vigie.accounts.otp import current_request
from vigie.accounts.sessions import expiry_reason, touch
from vigie.accounts.verified_user import fallback_user, verified_user


class SessionPolicyMiddleware:
    """Ends sessions that were idle too long or are too old, by flushing them server-side.

    Flushing (not just forgetting the cookie) deletes the stored session, so a copy of the
    cookie kept elsewhere stops working at the same moment. Runs after authentication and
    before deny-by-default, which then sees an anonymous visitor and sends them to login.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_request.set(request)
        try:
            self._enforce(request)
            return self.get_response(request)
        finally:
            current_request.reset(token)

    def _enforce(self, request: HttpRequest) -> None:
        user = request.user
        if not user.is_authenticated:
            return
        reason = expiry_reason(request)
        if reason is None:
            touch(request)
            return
        events.audit(events.SESSION_EXPIRED, request=request, actor=user, reason=reason)
        request.session.flush()
        request.user = AnonymousUser()
        # Read by deny-by-default's login redirect, so the login page can say why.
        request.vigie_session_expired = True  # type: ignore[attr-defined]


class VerifiedUserMiddleware(AuthenticationMiddleware):
    """AuthenticationMiddleware + django-otp's OTPMiddleware, with one statement for the
    user and their device instead of two ORM queries (see accounts.verified_user, and its
    differential test against the two libraries' middleware). A subclass of Django's, so
    that what checks for it (the admin) finds it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        # Its device rules (bound to this user, confirmed; forgotten otherwise) are reused.
        self.otp = OTPMiddleware(get_response)

    def process_request(self, request: HttpRequest) -> None:
        request.user = SimpleLazyObject(partial(self._load, request))  # type: ignore[assignment]
        request.auser = partial(_auser, request)

    def _load(self, request: HttpRequest) -> Any:
        user = verified_user(request, self.otp._finalize_device, self.otp._init_user_fields)
        if user is None:
            user = fallback_user(request, self.otp._verify_user_sync)
        return user


async def _auser(request: HttpRequest) -> Any:
    # Vigie serves WSGI; an async caller still gets the same user, loaded once.
    return await sync_to_async(_resolve)(request)


def _resolve(request: HttpRequest) -> Any:
    user = request.user
    _ = user.is_authenticated  # evaluates the lazy user here, on a worker thread
    return user
