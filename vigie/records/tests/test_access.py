"""`decide()`, `patients_in_scope()` and the 404 lookups, without HTTP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.test import RequestFactory
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.records import access
from vigie.records.models import CareRelationship, EmergencyAccess
from vigie.records.testing import make_doctor, make_document, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _vault(vault_home: Path) -> None:
    pass


def request_as(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_it_allows_a_doctor_with_an_active_relationship() -> None:
    doctor, patient = make_doctor(), make_patient()
    relationship = CareRelationship.objects.create(doctor=doctor, patient=patient, role="treating")
    decision = access.decide(doctor, "view", patient=patient)
    assert decision == access.Decision(True, access.CARE_RELATIONSHIP, relationship.pk, False)
    assert bool(decision)


def test_it_respects_relationship_bounds_in_time() -> None:
    doctor, patient = make_doctor(), make_patient()
    start = timezone.now()
    CareRelationship.objects.create(
        doctor=doctor,
        patient=patient,
        role="treating",
        valid_from=start,
        valid_until=start + timedelta(days=7),
    )
    assert not access.decide(doctor, "list", patient=patient, at=start - timedelta(seconds=1))
    assert access.decide(doctor, "list", patient=patient, at=start)
    assert not access.decide(doctor, "list", patient=patient, at=start + timedelta(days=7))
    assert list(access.patients_in_scope(doctor, at=start + timedelta(days=8))) == []


def test_it_allows_an_active_emergency_grant_and_says_so() -> None:
    doctor, patient = make_doctor(), make_patient()
    now = timezone.now()
    grant = EmergencyAccess.objects.create(
        doctor=doctor,
        patient=patient,
        reason="other",
        justification="x" * 25,
        granted_at=now,
        expires_at=now + timedelta(hours=4),
    )
    decision = access.decide(doctor, "download", patient=patient, at=now + timedelta(hours=1))
    assert decision.allowed
    assert decision.emergency
    assert decision.reason == access.EMERGENCY_ACCESS
    assert decision.basis_id == grant.pk
    assert decision.expires_at == grant.expires_at
    assert not access.decide(doctor, "download", patient=patient, at=grant.expires_at)


def test_a_relationship_wins_over_an_emergency_grant() -> None:
    doctor, patient = make_doctor(), make_patient()
    CareRelationship.objects.create(doctor=doctor, patient=patient, role="treating")
    now = timezone.now()
    EmergencyAccess.objects.create(
        doctor=doctor,
        patient=patient,
        reason="other",
        justification="x" * 25,
        granted_at=now,
        expires_at=now + timedelta(hours=4),
    )
    assert access.decide(doctor, "view", patient=patient).reason == access.CARE_RELATIONSHIP
    assert access.patients_in_scope(doctor).count() == 1


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
def test_other_roles_never_read(role: str) -> None:
    user = User.objects.create_user(username=f"u-{role}", role=role)
    patient = make_patient()
    CareRelationship.objects.create(doctor=user, patient=patient, role="treating")
    assert access.decide(user, "view", patient=patient).reason == access.ROLE_NOT_DOCTOR
    assert not access.patients_in_scope(user).exists()


def test_anonymous_and_unknown_actions_are_refused() -> None:
    patient = make_patient()
    assert access.decide(AnonymousUser(), "view", patient=patient).reason == access.ANONYMOUS
    assert access.decide(None, "view", patient=patient).reason == access.ANONYMOUS
    doctor = make_doctor()
    CareRelationship.objects.create(doctor=doctor, patient=patient, role="treating")
    assert access.decide(doctor, "delete", patient=patient).reason == access.UNKNOWN_ACTION  # type: ignore[arg-type]
    assert access.decide(doctor, "view").reason == access.NO_TARGET


def test_it_refuses_a_document_paired_with_another_patient() -> None:
    doctor, mine, other = make_doctor(), make_patient(), make_patient()
    CareRelationship.objects.create(doctor=doctor, patient=mine, role="treating")
    document = make_document(other)
    decision = access.decide(doctor, "view", patient=mine, document=document)
    assert decision.reason == access.DOCUMENT_OF_ANOTHER_PATIENT


def test_the_lookups_answer_404_alike_for_unknown_and_out_of_scope() -> None:
    doctor, patient = make_doctor(), make_patient()
    document = make_document(patient)
    request = request_as(doctor)
    with pytest.raises(access.OutOfScope) as refused:
        access.get_document_or_404(request, document.pk, "view")
    assert refused.value.document == document
    assert refused.value.decision.reason == access.NO_RELATIONSHIP
    with pytest.raises(Http404) as unknown:
        access.get_document_or_404(request, "Z" * 32, "view")
    assert not isinstance(unknown.value, access.OutOfScope)
    assert str(refused.value) == str(unknown.value) == ""
    with pytest.raises(access.OutOfScope):
        access.get_patient_or_404(request, patient.public_id)
    with pytest.raises(Http404):
        access.get_patient_or_404(request, "../../etc")
    CareRelationship.objects.create(doctor=doctor, patient=patient, role="treating")
    assert access.get_document_or_404(request, document.pk, "download")[0] == document
    assert access.get_patient_or_404(request, patient.public_id)[0] == patient
