"""Vigie's own pages for every failure: 403, 404, CSRF refusal and 500, in the user's language,
each with a way home — never Django's technical pages.

404 is one page whether the record is absent or out of the user's scope (the access
helpers raise Http404 for both): the page must not tell them apart. The 500 page is rendered
without the request's context processors and without base.html, because what failed may be
the database they read (the session, the guard's state): it must render on its own.

A request that failed because the database could not be reached (down, restarting, a failover
cutting the connection under it) is an outage, not a bug: it gets 503 with Retry-After, like
the other "temporarily unavailable" answers, and the next request reconnects.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader

logger = logging.getLogger(__name__)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # The exception's text (a model name, a path) is never shown: it could hint at a record.
    return render(request, "errors/404.html", status=404)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "errors/403.html", status=403)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # The usual causes for a person: a form left open past a logout, or cookies refused.
    logger.warning("CSRF refusal for %s: %s", request.path, reason)
    return _no_store(render(request, "errors/403_csrf.html", status=403))


# Seconds a client should wait before trying again after the database's 503.
DATABASE_RETRY_AFTER_SECONDS = 30


def database_unreachable(exception: BaseException | None) -> bool:
    """Whether the request failed because the database was out of reach: Django's wrappers of
    the driver's operational and interface errors (connection refused or cut, server shutting
    down), never a programming error. The chain is followed as Python's traceback does."""
    seen = 0
    while exception is not None and seen < 8:
        if isinstance(exception, (OperationalError, InterfaceError)):
            return True
        # As Python's traceback shows it: the cause, else the context unless `from None` hid it.
        if exception.__cause__ is not None or exception.__suppress_context__:
            exception = exception.__cause__
        else:
            exception = exception.__context__
        seen += 1
    return False


def _machine_answer(request: HttpRequest) -> HttpResponse | None:
    """A sender's client reads problem+json (REST) or an OperationOutcome (FHIR), not a page."""
    # Imported here: the portal's error pages must not load the intake unless it is needed.
    if request.path.startswith("/api/"):
        from django.utils.translation import gettext

        from vigie.intake.rest.problems import DATABASE_UNAVAILABLE, problem

        detail = gettext("The database cannot be reached right now: retry later.")
        return problem(request, DATABASE_UNAVAILABLE, detail)
    if request.path.startswith("/fhir/"):
        from django.utils.translation import gettext

        from vigie.intake.fhir.outcomes import unavailable

        return unavailable(gettext("The database cannot be reached right now: retry later."))
    return None


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception: sys.exc_info() is the failure.
    if database_unreachable(sys.exc_info()[1]):
        machine = _machine_answer(request)
        if machine is not None:
            return _no_store(machine)
        html = loader.get_template("errors/503_database.html").render({})
        response = HttpResponse(html, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return _no_store(response)
    html = loader.get_template("errors/500.html").render({})
    return _no_store(HttpResponse(html, status=500))
