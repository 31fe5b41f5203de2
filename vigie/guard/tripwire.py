"""Canary tripwire: every request's path and query string are checked against the decoys.

Placed before deny-by-default, so it sees outsiders without a session too (a leaked decoy
link fetched while the firewall was open is the incident's case). It only watches: the
response is whatever the rest of the stack answers, so a decoy looks like any other URL.
See `vigie.guard.canary` for what a touch does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from vigie.guard import canary

logger = logging.getLogger(__name__)


class CanaryTripwireMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            # Before the view: the alarm is stored even if the view then fails.
            canary.check_request(request)
        except Exception:  # a tripwire fault must not answer differently (or 500) for decoys
            logger.exception("canary tripwire failed for %s", request.path)
        return self.get_response(request)
