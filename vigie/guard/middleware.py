"""Lockdown, as the signed-in user sees it: the maintenance page, answered with 503.

Lockdown is *enforced* in the access decision (`vigie.records.access.ensure_served`): every
path to a patient's record raises `LockedDown` there while the flag is on, whatever the URL.
This middleware only turns that exception into the page that says the portal is locked
(FHIR views answer it themselves, as an OperationOutcome). It matches no URL and reads no
flag: pages that touch no record (login, static assets, admin, alerts, the guard and audit
pages) cost nothing and stay reachable, so administrators can see what happened and clear
the lockdown. Without this middleware a locked request would end in a 500, still without
a byte of the record; `test_lockdown_every_route` checks both.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from vigie.records.access import LockedDown

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

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, LockedDown):
            return lockdown_response(request)
        return None
