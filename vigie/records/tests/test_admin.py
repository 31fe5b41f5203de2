"""Issue 16, part 4, for patient data in the admin: every read is audited, nobody grants
themselves a patient, and a document's active-content verdict cannot be cleared."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils.translation import gettext

from vigie.accounts.models import Role, User
from vigie.accounts.testing import log_in, make_user
from vigie.audit.models import AuditEvent
from vigie.records.ingest import DocumentMeta
from vigie.records.models import CareRelationship, Document, EmergencyAccess, PendingDocument
from vigie.records.receive import Sender, receive
from vigie.records.testing import VALID_PDF, make_document, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def it_admin() -> User:
    return make_user("it.admin", role=Role.ADMIN)


@pytest.fixture
def it_client(it_admin: User) -> Client:
    client = Client()
    log_in(client, it_admin)
    return client


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# --- reads ---


def test_attack_admin_browses_the_patient_list_unrecorded(it_client: Client) -> None:
    patient = make_patient("LEGRAND")
    response = it_client.get("/admin/records/patient/", {"q": "LEGRAND"})
    assert response.status_code == 200
    assert "LEGRAND" in response.content.decode()
    event = AuditEvent.objects.get(action="admin.records.patient.list")
    assert event.actor_username == "it.admin"
    assert event.extra["query"] == {"q": ["LEGRAND"]}
    it_client.get(f"/admin/records/patient/{patient.pk}/change/")
    viewed = AuditEvent.objects.get(action="admin.records.patient.view")
    assert viewed.patient_ipp == patient.ipp


def test_every_admin_page_with_patient_data_is_audited(it_client: Client) -> None:
    patient = make_patient()
    doctor = make_user("dr.house")
    document = make_document(patient)
    relationship = CareRelationship.objects.create(doctor=doctor, patient=patient, role="treating")
    emergency = EmergencyAccess.objects.create(
        doctor=doctor,
        patient=patient,
        reason="vital_emergency",
        justification="Patient admitted unconscious to the emergency room",
        expires_at=document.received_at.replace(year=2099),
    )
    pages = {
        "/admin/records/document/": "admin.records.document.list",
        f"/admin/records/document/{quote(document.pk)}/change/": "admin.records.document.view",
        "/admin/records/carerelationship/": "admin.records.carerelationship.list",
        f"/admin/records/carerelationship/{relationship.pk}/change/": (
            "admin.records.carerelationship.view"
        ),
        "/admin/records/emergencyaccess/": "admin.records.emergencyaccess.list",
        f"/admin/records/emergencyaccess/{emergency.pk}/change/": (
            "admin.records.emergencyaccess.view"
        ),
        f"/admin/records/patient/{patient.pk}/history/": "admin.records.patient.history",
        "/admin/autocomplete/?app_label=records&model_name=carerelationship"
        "&field_name=patient&term=DURAND": "admin.records.patient.search",
    }
    for url, action in pages.items():
        before = AuditEvent.objects.filter(action=action).count()
        assert it_client.get(url).status_code == 200, url
        assert AuditEvent.objects.filter(action=action).count() == before + 1, url


def test_the_reconciliation_pages_are_audited(it_client: Client) -> None:
    received = receive(
        Sender(
            ipp="L-0042",
            ipp_source="LABO-SUD",
            family_name="DURAND",
            given_names="Camille",
            birth_date=date(1985, 3, 14),
        ),
        DocumentMeta(
            kind="lab_result",
            title="Ferritine",
            clinical_date=date(2026, 11, 2),
            source_system="LABO-SUD",
        ),
        VALID_PDF,
        channel="hl7",
    )
    pending = received.pending
    assert isinstance(pending, PendingDocument)
    assert it_client.get("/intake/reconcile/").status_code == 200
    assert it_client.get(f"/intake/reconcile/{pending.pk}/").status_code == 200
    assert "intake.reconcile.list" in _actions()
    view = AuditEvent.objects.get(action="intake.reconcile.view")
    assert view.extra["pending_id"] == pending.pk


# --- care relationships ---


def test_attack_admin_grants_himself_a_care_relationship(it_admin: User, it_client: Client) -> None:
    # A doctor who also administers (or an admin who became one): still not for himself.
    User.objects.filter(pk=it_admin.pk).update(role=Role.DOCTOR)
    patient = make_patient()
    response = it_client.post(
        "/admin/records/carerelationship/add/",
        {
            "doctor": it_admin.pk,
            "patient": patient.pk,
            "role": "treating",
            "valid_from_0": "2026-11-01",
            "valid_from_1": "08:00:00",
            "valid_until_0": "",
            "valid_until_1": "",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        gettext("Nobody can grant themselves access to a patient.")
    ]
    assert not CareRelationship.objects.filter(doctor=it_admin).exists()


# --- active content ---


def _change_form(document: Document) -> dict[str, Any]:
    # What the change form posted before issue 16, with the flag unticked.
    return {"content_warnings": "[]", "_save": "Save"}


def test_attack_admin_clears_active_content(it_client: Client) -> None:
    document = make_document(make_patient())
    Document.objects.filter(pk=document.pk).update(
        active_content=True, content_warnings=["JavaScript"]
    )
    response = it_client.post(
        f"/admin/records/document/{quote(document.pk)}/change/", _change_form(document)
    )
    assert response.status_code in (200, 302, 403)
    document.refresh_from_db()
    assert document.active_content is True
    assert document.content_warnings == ["JavaScript"]


def test_it_refuses_to_change_the_content_verdict_from_code(db: None) -> None:
    document = make_document(make_patient())
    Document.objects.filter(pk=document.pk).update(active_content=True)
    document.refresh_from_db()
    document.active_content = False
    with pytest.raises(ValidationError):
        document.save()
    document.refresh_from_db()
    assert document.active_content is True
    # Other fields still save.
    document.title = "Corrected title"
    document.save()
