"""Vigie's own pages for every failure: 403, 404, CSRF refusal and 500, in the user's language,
each with a way home — never Django's technical pages.

404 is one page whether the record is absent or out of the user's scope (the access
helpers raise Http404 for both): the page must not tell them apart. The 500 page is rendered
without the request's context processors and without base.html, because what failed may be
the database they read (the session, the guard's state): it must render on its own.
"""

from __future__ import annotations

import logging

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


def server_error(request: HttpRequest) -> HttpResponse:
    html = loader.get_template("errors/500.html").render({})
    return _no_store(HttpResponse(html, status=500))
