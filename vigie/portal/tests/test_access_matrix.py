"""THE access matrix: every (relationship state × action) cell, through the real views and
through `decide()`. Plus the roles that never read: IT administrators and auditors."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from vigie.accounts.models import User
from vigie.audit.models import AuditEvent
from vigie.portal.testing import grant, relate
from vigie.records import access
from vigie.records.models import Document, Patient
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

STATES = ["relationship", "relationship_expired", "none", "emergency", "emergency_expired"]
ALLOWED = {"relationship": access.CARE_RELATIONSHIP, "emergency": access.EMERGENCY_ACCESS}
ACTIONS = ["list", "view", "download"]


def put_in_state(doctor: User, patient: Patient, state: str) -> None:
    if state == "relationship":
        relate(doctor, patient)
    elif state == "relationship_expired":
        relate(doctor, patient, expired=True)
    elif state == "emergency":
        grant(doctor, patient)
    elif state == "emergency_expired":
        grant(doctor, patient, expired=True)


def urls_for(action: str, patient: Patient, document: Document) -> list[str]:
    if action == "list":
        return [reverse("portal:patient_detail", args=[patient.public_id])]
    if action == "view":
        return [
            reverse("portal:document_viewer", args=[document.pk]),
            reverse("portal:document_content", args=[document.pk]),
        ]
    return [reverse("portal:document_download", args=[document.pk])]


def listed_on_home(client: Client, patient: Patient) -> bool:
    body = client.get(reverse("portal:home")).content.decode()
    return patient.public_id in body


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("state", STATES)
def test_it_applies_the_access_matrix(
    state: str, action: str, doctor: User, colleague: User, signed_in: Callable[[User], Client]
) -> None:
    patient = make_patient("MATRIX")
    document = make_document(patient, b"%PDF-1.4 matrix")
    other_patient = make_patient("AUTRE")
    other_document = make_document(other_patient, b"%PDF-1.4 other")
    put_in_state(doctor, patient, state)
    # The colleague cares for the other patient only: scopes never leak across doctors.
    relate(colleague, other_patient)
    allowed = state in ALLOWED

    decision = access.decide(doctor, action, patient=patient)  # type: ignore[arg-type]
    assert decision.allowed is allowed
    assert decision.reason == ALLOWED.get(state, access.NO_RELATIONSHIP)
    assert decision.emergency is (state == "emergency")
    assert access.decide(doctor, action, document=document).allowed is allowed  # type: ignore[arg-type]
    assert not access.decide(doctor, action, document=other_document)  # type: ignore[arg-type]
    assert (patient in access.patients_in_scope(doctor)) is allowed

    client = signed_in(doctor)
    for url in urls_for(action, patient, document):
        response = client.get(url)
        assert response.status_code == (200 if allowed else 404), url
        if allowed and url.endswith(("/content", "/download")):
            assert b"".join(response.streaming_content) == b"%PDF-1.4 matrix"  # type: ignore[attr-defined]
    for url in urls_for(action, other_patient, other_document):
        assert client.get(url).status_code == 404, url
    if action == "list":
        assert listed_on_home(client, patient) is allowed
        assert not listed_on_home(client, other_patient)

    colleague_client = signed_in(colleague)
    for url in urls_for(action, patient, document):
        assert colleague_client.get(url).status_code == 404, url


@pytest.mark.parametrize("role_fixture", ["admin_user", "auditor"])
@pytest.mark.parametrize("action", ACTIONS)
def test_admin_and_auditor_cannot_read_documents_even_with_a_relationship(
    role_fixture: str, action: str, request: pytest.FixtureRequest, signed_in
) -> None:
    user: User = request.getfixturevalue(role_fixture)
    patient = make_patient("ROLES")
    document = make_document(patient)
    # A relationship created behind the model's validation (CareRelationship.clean refuses
    # non-doctors): even then the role alone refuses.
    relate(user, patient)
    grant(user, patient)
    decision = access.decide(user, action, document=document)  # type: ignore[arg-type]
    assert not decision.allowed
    assert decision.reason == access.ROLE_NOT_DOCTOR
    assert not access.patients_in_scope(user).exists()
    client = signed_in(user)
    for url in urls_for(action, patient, document):
        response = client.get(url)
        assert response.status_code == 404
        assert b"%PDF" not in response.content
    assert patient.public_id not in client.get(reverse("portal:home")).content.decode()


def _without_csrf_tokens(page: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", page)


def test_it_answers_out_of_scope_exactly_like_unknown(doctor: User, signed_in) -> None:
    patient = make_patient()
    document = make_document(patient)
    client = signed_in(doctor)
    unknown_doc = "A" * 32
    for real, fake in [
        (
            reverse("portal:document_viewer", args=[document.pk]),
            reverse("portal:document_viewer", args=[unknown_doc]),
        ),
        (
            reverse("portal:document_content", args=[document.pk]),
            reverse("portal:document_content", args=[unknown_doc]),
        ),
        (
            reverse("portal:document_download", args=[document.pk]),
            reverse("portal:document_download", args=[unknown_doc]),
        ),
        (
            reverse("portal:patient_detail", args=[patient.public_id]),
            reverse("portal:patient_detail", args=["B" * 16]),
        ),
    ]:
        first, second = client.get(real), client.get(fake)
        assert first.status_code == second.status_code == 404
        # The same page, byte for byte, but for the forms' CSRF tokens (masked afresh on every
        # answer, so they differ between any two pages).
        assert _without_csrf_tokens(first.content) == _without_csrf_tokens(second.content)
        assert b"Page non trouv" in first.content


def test_doctor_cannot_read_a_document_of_a_patient_outside_scope(doctor: User, signed_in) -> None:
    patient = make_patient()
    document = make_document(patient, b"%PDF-1.4 secret")
    response = signed_in(doctor).get(reverse("portal:document_content", args=[document.pk]))
    assert response.status_code == 404
    assert b"secret" not in response.content
    denied = AuditEvent.objects.get(action="document.read.denied")
    assert denied.document_id == document.pk
    assert denied.outcome == "denied"
    assert denied.reason == access.NO_RELATIONSHIP
    assert not AuditEvent.objects.filter(action="document.read").exists()


def test_inactive_doctor_reads_nothing(doctor: User) -> None:
    patient = make_patient()
    relate(doctor, patient)
    doctor.is_active = False
    doctor.save()
    assert access.decide(doctor, "view", patient=patient).reason == access.INACTIVE_USER
    assert not access.patients_in_scope(doctor).exists()
