"""Lockdown enforcement: while the guard's lockdown is on, the portal serves no records.

Placed after deny-by-default, so only signed-in users get this far. It looks at the view
the URL resolved to (process_view, after URL resolution, so no second resolve) and checks
the flag only for the records' views: static assets, login, admin, alerts, the guard and
audit pages cost no query and stay reachable, so administrators can see what happened and
clear the lockdown. A doctor gets a plain maintenance page, never a document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from vigie.guard.lockdown import is_locked_down

# URL namespaces whose views show or stream records.
LOCKED_NAMESPACES = frozenset({"portal"})
RETRY_AFTER_SECONDS = 300


def lockdown_response(request: HttpRequest) -> HttpResponse:
    response = render(request, "guard/lockdown.html", status=503)
    response["Cache-Control"] = "no-store"
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class LockdownMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or not LOCKED_NAMESPACES.intersection(match.namespaces):
            return None
        if is_locked_down():
            return lockdown_response(request)
        return None
