"""Lockdown in the portal: once an exposure is detected, signed-in doctors get a maintenance
page instead of records, until an administrator clears it; everything else keeps working."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.guard import lockdown, middleware
from vigie.guard.models import GuardState
from vigie.records.models import CareRelationship
from vigie.records.tests.factories import make_document, make_patient

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n" + b"x" * 4096 + b"\n%%EOF\n"


@pytest.fixture(autouse=True)
def _portal_env(settings, vault_home) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def doctor():
    return make_user("dr.lockdown", role=Role.DOCTOR)


@pytest.fixture
def admin_user():
    return make_user("it.lockdown", role=Role.ADMIN)


@pytest.fixture
def document(doctor):
    patient = make_patient("VERROU")
    CareRelationship.objects.create(
        doctor=doctor,
        patient=patient,
        role="treating",
        valid_from=timezone.now() - timedelta(days=1),
    )
    return make_document(patient, PDF)


def signed_in(user) -> Client:
    client = Client()
    log_in(client, user)
    return client


def body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def assert_maintenance_page(response) -> None:
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert int(response["Retry-After"]) > 0
    assert response["Content-Type"].startswith("text/html")
    assert b"%PDF" not in body(response)
    assert response.templates[0].name == "guard/lockdown.html"


def test_lockdown_stops_documents_for_signed_in_doctor(doctor, document) -> None:
    client = signed_in(doctor)
    content_url = reverse("portal:document_content", args=[document.pk])
    assert body(client.get(content_url)) == PDF  # served before the lockdown

    lockdown.engage("test: exposure seen from outside")

    for url in (
        content_url,
        reverse("portal:document_download", args=[document.pk]),
        reverse("portal:document_viewer", args=[document.pk]),
        reverse("portal:patient_detail", args=[document.patient.public_id]),
        reverse("portal:home"),
        reverse("portal:emergency_lookup"),
    ):
        assert_maintenance_page(client.get(url))


def test_the_maintenance_page_says_why_in_the_users_language(doctor, document) -> None:
    lockdown.engage("probe round 7f3a: /keyring/keyring.json served")
    response = signed_in(doctor).get(
        reverse("portal:document_content", args=[document.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    text = body(response).decode()
    assert "security team checks the installation" in text
    assert "guard page" in text
    # The reason is for administrators (alerts, guard page), not for every doctor.
    assert "7f3a" not in text
    assert "keyring" not in text


def test_lockdown_leaves_login_and_admin_pages_without_a_flag_query(
    admin_user, monkeypatch
) -> None:
    lockdown.engage("test")
    asked: list[bool] = []

    def spy() -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(middleware, "is_locked_down", spy)

    assert Client().get(reverse("accounts:login")).status_code == 200
    assert Client().get("/static/vigie/vigie.css").status_code != 503
    assert Client().get("/robots.txt").status_code == 200
    # Administrators still reach the alerts to see what happened.
    assert signed_in(admin_user).get(reverse("alerts:list")).status_code == 200
    assert asked == []


def test_anonymous_visitors_still_get_the_login_redirect_during_lockdown(document) -> None:
    lockdown.engage("test")
    response = Client().get(reverse("portal:document_content", args=[document.pk]))
    # Deny-by-default answers first: an outsider learns nothing, not even the lockdown.
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_documents_are_served_again_after_an_admin_clears_the_lockdown(
    doctor, admin_user, document
) -> None:
    client = signed_in(doctor)
    url = reverse("portal:document_content", args=[document.pk])
    lockdown.engage("test")
    assert client.get(url).status_code == 503

    assert lockdown.clear(admin_user)

    response = client.get(url)
    assert response.status_code == 200
    assert body(response) == PDF


def test_an_unreadable_flag_keeps_documents_locked(doctor, document, monkeypatch) -> None:
    # is_locked_down fails closed on a database error; the middleware must honour it.
    from django.db import DatabaseError

    def broken(*args, **kwargs):
        raise DatabaseError("database is locked")

    monkeypatch.setattr(GuardState.objects, "filter", broken)
    response = signed_in(doctor).get(reverse("portal:document_content", args=[document.pk]))
    assert_maintenance_page(response)
