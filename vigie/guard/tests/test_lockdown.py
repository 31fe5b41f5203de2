"""Lockdown in the portal: once an exposure is detected, signed-in doctors get a maintenance
page instead of records, until an administrator clears it; everything else keeps working.

Every route is walked in test_lockdown_every_route; these are the details: the page, the
audit of refusals, FHIR's answer, no existence oracle, a lockdown engaged mid-request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.audit import log as audit_log
from vigie.audit.models import AuditEvent
from vigie.guard import lockdown
from vigie.portal import door
from vigie.records.access import LockedDown, decide, patients_in_scope
from vigie.records.models import CareRelationship
from vigie.records.testing import make_document, make_patient

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

    # The access decision finds the flag through settings.VIGIE_LOCKDOWN_FLAG, by name.
    monkeypatch.setattr(lockdown, "is_locked_down", spy)

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

    monkeypatch.setattr(lockdown, "_flag_is_set", broken)
    response = signed_in(doctor).get(reverse("portal:document_content", args=[document.pk]))
    assert_maintenance_page(response)


def test_the_access_decision_itself_refuses_during_lockdown(doctor, document) -> None:
    # Whatever calls it (a view, an API, a task), not only the URLs somebody listed.
    assert decide(doctor, "view", document=document).allowed
    lockdown.engage("test")
    with pytest.raises(LockedDown):
        decide(doctor, "view", document=document)
    with pytest.raises(LockedDown):
        patients_in_scope(doctor)


def test_it_refuses_fhir_binary_with_an_operation_outcome_during_lockdown(doctor, document) -> None:
    lockdown.engage("probe round 7f3a: /keyring/keyring.json served")
    response = signed_in(doctor).get(f"/fhir/Binary/{document.pk}")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/fhir+json")
    assert int(response["Retry-After"]) > 0
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "lockdown" in outcome["issue"][0]["diagnostics"]
    assert b"%PDF" not in body(response)
    assert "7f3a" not in response.content.decode()


def test_it_refuses_to_tell_known_ids_from_unknown_ones_during_lockdown(doctor, document) -> None:
    # Before any lookup: a 503 for a real id and a 404 for a made-up one would be an oracle.
    lockdown.engage("test")
    client = signed_in(doctor)
    for real, made_up in (
        (f"/documents/{document.pk}/content", "/documents/AAAAAAAAAAAAAAAAAAAAAAAA/content"),
        (f"/patients/{document.patient.public_id}/", "/patients/AAAAAAAAAAAA/"),
        (f"/fhir/Binary/{document.pk}", "/fhir/Binary/AAAAAAAAAAAAAAAAAAAAAAAA"),
        (f"/fhir/Patient/{document.patient.public_id}", "/fhir/Patient/AAAAAAAAAAAA"),
    ):
        assert client.get(real).status_code == client.get(made_up).status_code == 503


def test_a_read_refused_by_the_lockdown_is_audited(doctor, document) -> None:
    # The investigation of an exposure wants to see who still tried to read what.
    lockdown.engage("test")
    signed_in(doctor).get(reverse("portal:document_content", args=[document.pk]))
    event = AuditEvent.objects.filter(action="document.read.denied").latest("seq")
    assert event.outcome == "denied"
    assert event.reason == "lockdown"
    assert event.extra["requested_id"] == document.pk


def test_it_refuses_the_bytes_when_lockdown_engages_during_the_audit(
    doctor, document, monkeypatch
) -> None:
    # The door asks again just before the vault: the decision was taken before the lockdown,
    # the bytes would leave after it.
    real_record = audit_log.record

    def record_then_lock(*args, **kwargs):
        event = real_record(*args, **kwargs)
        lockdown.engage("test: engaged while the read was being audited")
        return event

    monkeypatch.setattr(door, "record", record_then_lock)
    response = signed_in(doctor).get(reverse("portal:document_content", args=[document.pk]))
    assert_maintenance_page(response)


def test_the_lockdown_page_discloses_nothing_of_the_patient_just_read(doctor, document) -> None:
    client = signed_in(doctor)
    patient = document.patient
    assert client.get(reverse("portal:patient_detail", args=[patient.public_id])).status_code == 200
    lockdown.engage("test")
    response = client.get(reverse("portal:home"))
    assert_maintenance_page(response)
    text = body(response).decode().lower()
    for value in (patient.family_name, patient.ins, patient.ipp, document.title, patient.public_id):
        assert value.lower() not in text
