"""Fail closed: when the audit trail cannot be written, the portal serves nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

from vigie.audit.log import AuditUnavailable

logger = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., HttpResponseBase])

# Seconds a client should wait before trying again after a 503.
RETRY_AFTER_SECONDS = 60


def audit_unavailable_response(request: HttpRequest) -> HttpResponse:
    response = render(request, "portal/audit_unavailable.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def fail_closed_without_audit(view: View) -> View:
    """Answer 503 (and nothing else) when a view could not record its audit event."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except AuditUnavailable:
            logger.exception("audit trail unavailable: refusing %s", request.path)
            return audit_unavailable_response(request)

    return cast(View, wrapped)
