"""Session policy: idle and absolute timeouts, enforced server-side on every request."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse

from vigie.accounts import events
from vigie.accounts.otp import current_request
from vigie.accounts.sessions import expiry_reason, touch


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
