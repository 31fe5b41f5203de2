"""Deny by default, checked on every route the URL configuration has, found at run time.

The walk expands every include (the admin too), fills each path converter or regex group
with plausible values until the URL resolves back to the same view, then asks as an outsider
and as a half-logged-in user (password right, no second factor), by GET and by POST. Only a
redirect to the login page, 401, 403 or 404 is an acceptable answer. A route added later is
covered without anyone editing this file; a route whose URL cannot be built fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, include, resolve, reverse
from django.urls import path as url_path
from django.urls.exceptions import Resolver404
from django.utils.regex_helper import normalize
from pytest_django.fixtures import Settings as SettingsWrapper

from vigie.accounts.deny_by_default import (
    PUBLIC_VIEWS,
    SECOND_FACTOR_VIEWS,
    authenticates_itself,
    login_redirect,
)
from vigie.accounts.models import Role
from vigie.accounts.testing import PASSWORD, make_user

pytestmark = pytest.mark.django_db

# Values tried for each URL parameter, in order, until the URL resolves to its own view.
_CANDIDATES = [
    "1",
    "P7K2M9QX4T",
    "00000000-0000-4000-8000-000000000001",
    "x",
    "a/b",
    *sorted({config.label for config in apps.get_app_configs()}),
]


@dataclass(frozen=True)
class Route:
    path: str
    view_name: str
    pattern: str


def _patterns(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        regex = entry.pattern.regex.pattern.removeprefix("^")
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, prefix + regex)
        else:
            yield prefix + regex, entry


def _build(regex: str, callback: Any) -> str | None:
    for template, params in normalize(regex):
        for values in product(_CANDIDATES, repeat=len(params)):
            path = "/" + template % dict(zip(params, values, strict=True))
            try:
                match = resolve(path)
            except Resolver404:
                continue
            if match.func is callback or getattr(match.func, "__wrapped__", None) is callback:
                return path
    return None


def all_routes() -> list[Route]:
    routes: list[Route] = []
    unbuildable: list[str] = []
    for regex, pattern in _patterns(get_resolver()):
        path = _build(regex, pattern.callback)
        if path is None:
            unbuildable.append(regex)
            continue
        routes.append(Route(path, resolve(path).view_name, regex))
    assert not unbuildable, f"cannot build a URL for: {unbuildable}; add a value to _CANDIDATES"
    return routes


ROUTES = all_routes()
LOGIN = reverse(settings.LOGIN_URL)


def _refused(response: HttpResponseBase) -> bool:
    if response.status_code in (401, 403, 404):
        return True
    return response.status_code == 302 and str(response["Location"]).split("?")[0] == LOGIN


@pytest.fixture(autouse=True)
def _plain_http(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_it_finds_the_routes_of_every_app() -> None:
    names = {route.view_name for route in ROUTES}
    # A sanity check on the walk itself: it reaches into includes, the admin's included.
    assert {"accounts:login", "health", "admin:index", "admin:accounts_user_change"} <= names
    assert len(ROUTES) > 50


def test_the_allowlists_name_real_routes() -> None:
    names = {route.view_name for route in ROUTES}
    assert names >= PUBLIC_VIEWS | SECOND_FACTOR_VIEWS


@pytest.mark.parametrize("method", ["get", "post"])
def test_outsider_is_refused_everywhere_but_the_allowlist(method: str) -> None:
    outsider = Client()
    leaks = []
    for route in ROUTES:
        if route.view_name in PUBLIC_VIEWS:
            continue
        response = getattr(outsider, method)(route.path)
        if not _refused(response):
            leaks.append((route.path, route.view_name, response.status_code))
    assert not leaks


@pytest.mark.parametrize("method", ["get", "post"])
def test_half_logged_in_user_is_refused_everywhere_but_the_second_factor_steps(
    method: str,
) -> None:
    user = make_user("dr.halfway", role=Role.ADMIN)
    client = Client()
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response["Location"] == "/accounts/verify/"
    leaks = []
    for route in ROUTES:
        if route.view_name in PUBLIC_VIEWS | SECOND_FACTOR_VIEWS:
            continue
        response = getattr(client, method)(route.path)
        if not _refused(response):
            leaks.append((route.path, route.view_name, response.status_code))
        # Still half logged in (no route quietly logged the user out and hid a leak).
        assert "_auth_user_id" in client.session, route.path
    assert not leaks


def test_unknown_paths_look_the_same_as_real_ones_to_an_outsider() -> None:
    outsider = Client()
    for path in ("/no/such/page", "/admin/", "/.env", "/documents/1/content"):
        response = outsider.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN)


@pytest.mark.parametrize("path", ["//evil.example/x", "///evil.example"])
def test_next_never_points_off_site(path: str, rf: RequestFactory) -> None:
    # "//evil.example/x" is a path here but a protocol-relative URL in a Location header.
    # (Built by hand: the test client would read "//host/" as a host.)
    request = rf.get("/")
    request.path = request.path_info = path
    request.META["PATH_INFO"] = path
    request.user = AnonymousUser()
    response = login_redirect(request)
    assert response.status_code == 302
    assert response["Location"] == LOGIN


def test_a_post_redirects_to_login_without_next() -> None:
    response = Client().post("/patients/P7K2M9QX4T/")
    assert response["Location"] == LOGIN


@pytest.mark.parametrize(
    "path", ["/accounts/login/", "/health", "/robots.txt", "/accounts/locked/"]
)
def test_the_public_pages_answer_an_outsider(path: str) -> None:
    assert Client().get(path).status_code in (200, 429)


def test_a_load_balancers_plain_http_health_check_is_answered_not_redirected(
    settings: SettingsWrapper,
) -> None:
    """HAProxy checks each node over plain HTTP, without the X-Forwarded-Proto it adds to
    clients' requests: redirected to https, its check never got the 200 it expects and it
    took every node out. Every other page still redirects."""
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    health = client.get("/health", HTTP_HOST="testserver")
    assert health.status_code == 200
    assert health.content == b"ok\n"
    login = client.get("/accounts/login/")
    assert login.status_code == 301
    assert login["Location"].startswith("https://")


def _api_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("needs an API key", status=401)


def _page_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("secret page")


urlpatterns = [
    url_path("accounts/", include("vigie.accounts.urls")),
    url_path("api/ping", authenticates_itself(_api_view), name="api_ping"),
    url_path("page", _page_view, name="page"),
]


@pytest.mark.urls(__name__)
def test_a_view_that_authenticates_itself_is_reached_without_a_session() -> None:
    outsider = Client()
    assert outsider.get("/api/ping").status_code == 401
    assert outsider.get("/api/ping").content == b"needs an API key"
    assert outsider.get("/page")["Location"] == f"{LOGIN}?next=%2Fpage"
    # API-like paths without such a view get a status, not a login form.
    assert outsider.get("/api/nothing").status_code == 401
