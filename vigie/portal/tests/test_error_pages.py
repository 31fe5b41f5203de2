"""Vigie's own pages for every failure, in the user's language, with a way home: never
Django's technical pages, never a hint that a record exists."""

from __future__ import annotations

import html
import time

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client
from django.urls import path

from vigie import urls as vigie_urls
from vigie.accounts import sessions
from vigie.accounts.deny_by_default import authenticates_itself
from vigie.accounts.models import User
from vigie.accounts.testing import log_in
from vigie.audit.log import AuditUnavailable
from vigie.portal import error_pages
from vigie.portal.errors import fail_closed_without_audit
from vigie.records.access import LockedDown

pytestmark = pytest.mark.django_db


def _broken(request):
    raise RuntimeError("a bug")


def _locked(request):
    raise LockedDown


def _database_gone(request):
    # What Django raises when the server cut the connection under a request (a failover, a
    # restart): the driver's error, wrapped, with the driver's as its cause.
    try:
        raise ConnectionResetError("server closed the connection unexpectedly")
    except ConnectionResetError as exc:
        raise OperationalError("terminating connection due to administrator command") from exc


@authenticates_itself
def _sender_database_gone(request):
    # A sender's endpoint (API key checked in the view, as the real ones do).
    return _database_gone(request)


def _database_closed(request):
    try:
        raise InterfaceError("connection already closed")
    except InterfaceError:
        raise RuntimeError("while rendering") from None


@fail_closed_without_audit
def _no_audit(request):
    raise AuditUnavailable("database read-only")


# The real routes (the pages' links need them) and three that fail on purpose.
urlpatterns = [
    path("broken/", _broken),
    path("locked/", _locked),
    path("database-gone/", _database_gone),
    path("database-closed/", _database_closed),
    path("api/v1/database-gone/", _sender_database_gone),
    path("fhir/database-gone/", _sender_database_gone),
    path("no-audit/", _no_audit),
    *vigie_urls.urlpatterns,
]
handler403 = vigie_urls.handler403
handler404 = vigie_urls.handler404
handler500 = vigie_urls.handler500


def _text(response) -> str:
    return html.unescape(str(response.content.decode()))


def test_it_answers_an_unknown_page_in_french_with_a_way_home(doctor: User, signed_in) -> None:
    response = signed_in(doctor).get("/patients/AAAAAAAAAAAAAAAA/")
    page = _text(response)
    assert response.status_code == 404
    assert "Page non trouvée" in page
    assert 'href="/"' in page
    assert "Retour à ma page d'accueil" in page
    assert "AAAAAAAAAAAAAAAA" not in page  # the address asked for is not repeated
    assert "Not Found" not in page


def test_it_answers_in_english_to_an_english_reader(doctor: User, signed_in) -> None:
    client = signed_in(doctor)
    client.cookies["django_language"] = "en"
    page = _text(client.get("/nothing-here/"))
    assert "Page not found" in page
    assert "Back to my home page" in page


def test_it_refuses_a_forbidden_page_in_french(admin_user: User, signed_in) -> None:
    # An administrator has no emergency access: PermissionDenied, answered by our 403.
    response = signed_in(admin_user).get("/emergency/")
    page = _text(response)
    assert response.status_code == 403
    assert "Accès refusé" in page
    assert "Retour à ma page d'accueil" in page


def test_a_refused_form_gets_a_french_page_not_djangos(doctor: User) -> None:
    client = Client(enforce_csrf_checks=True)
    log_in(client, doctor)
    response = client.post("/emergency/", {"ins": "1"})
    page = _text(response)
    assert response.status_code == 403
    assert "Formulaire expiré" in page
    assert 'href="/"' in page
    assert "CSRF" not in page
    assert "Forbidden" not in page


def test_the_500_page_renders_without_the_database(rf, django_assert_num_queries) -> None:
    request = rf.get("/anything/")
    with django_assert_num_queries(0):
        response = error_pages.server_error(request)
    page = _text(response)
    assert response.status_code == 500
    assert "Une erreur s'est produite" in page
    assert 'href="/"' in page
    assert "Traceback" not in page
    assert "a bug" not in page


def test_a_crashing_view_shows_the_500_page(doctor: User, signed_in, settings) -> None:
    settings.ROOT_URLCONF = __name__
    client = signed_in(doctor)
    client.raise_request_exception = False
    response = client.get("/broken/")
    assert response.status_code == 500
    page = _text(response)
    assert "Une erreur s'est produite" in page
    assert "a bug" not in page


def test_a_database_cut_under_a_request_answers_503_to_retry_not_500(
    doctor: User, signed_in, settings
) -> None:
    settings.ROOT_URLCONF = __name__
    client = signed_in(doctor)
    client.raise_request_exception = False
    response = client.get("/database-gone/")
    assert response.status_code == 503
    assert response["Retry-After"] == str(error_pages.DATABASE_RETRY_AFTER_SECONDS)
    assert response["Cache-Control"] == "no-store"
    page = _text(response)
    assert "Momentanément indisponible" in page
    assert "base de données" in page
    assert "administrator" not in page
    # An error that is not the database's (its cause chain cut with `from None`) stays a 500.
    assert client.get("/database-closed/").status_code == 500


def test_a_sender_gets_its_own_format_for_a_database_cut(settings) -> None:
    # A lab's client parses problem+json (REST) or an OperationOutcome (FHIR): an HTML page
    # in the middle of an outage was unreadable to it.
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    rest = client.get("/api/v1/database-gone/")
    assert rest.status_code == 503
    assert rest["Content-Type"] == "application/problem+json"
    assert rest.json()["type"] == "urn:vigie:problem:database-unavailable"
    assert rest["Retry-After"]
    fhir = client.get("/fhir/database-gone/")
    assert fhir.status_code == 503
    assert fhir.json()["resourceType"] == "OperationOutcome"
    assert fhir.json()["issue"][0]["code"] == "transient"
    assert fhir["Retry-After"]


def test_lockdown_and_a_dead_audit_trail_answer_503_with_a_way_home(
    doctor: User, signed_in, settings
) -> None:
    settings.ROOT_URLCONF = __name__
    client = signed_in(doctor)
    for url, words in [
        ("/locked/", "Documents momentanément indisponibles"),
        ("/no-audit/", "Momentanément indisponible"),
    ]:
        response = client.get(url)
        assert response.status_code == 503, url
        page = _text(response)
        assert words in page
        assert "Retour à ma page d'accueil" in page


def test_after_the_idle_limit_the_login_page_says_the_session_expired(
    doctor: User, signed_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = signed_in(doctor)
    start = time.time()
    monkeypatch.setattr(sessions, "now", lambda: start + 16 * 60)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?expired=1")
    page = _text(client.get(response["Location"]))
    assert "Votre session a expiré" in page
    # An ordinary visit to the login page says nothing of the kind.
    assert "Votre session a expiré" not in _text(Client().get("/accounts/login/"))


def test_a_live_session_sent_to_the_expiry_page_goes_home_not_back_to_the_record(
    doctor: User, signed_in
) -> None:
    # Another tab kept the session alive while this one counted down: no record reopened.
    response = signed_in(doctor).get("/accounts/login/?expired=1&next=/patients/ABCDEFGHIJKLMNOP/")
    assert response.status_code == 302
    assert response["Location"] == "/"
