from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.records.models import CareRelationship, Patient
from vigie.records.testing import make_doctor, make_patient

pytestmark = pytest.mark.django_db


def test_it_refuses_an_ins_with_a_wrong_key() -> None:
    patient = Patient(
        ipp="IPP1", ins="184127645108947", family_name="X", given_names="Y", birth_date="1984-12-01"
    )
    with pytest.raises(ValidationError) as info:
        patient.full_clean()
    assert "ins" in info.value.message_dict


def test_it_normalises_a_typed_ins() -> None:
    patient = Patient(
        ipp="IPP2",
        ins="1 84 12 76 451 089 46",
        family_name="X",
        given_names="Y",
        birth_date="1984-12-01",
    )
    patient.full_clean()
    assert patient.ins == "184127645108946"


def test_relationships_are_active_only_within_their_period() -> None:
    doctor, patient = make_doctor(), make_patient()
    now = timezone.now()
    current = CareRelationship.objects.create(doctor=doctor, patient=patient, role="treating")
    expired = CareRelationship.objects.create(
        doctor=doctor,
        patient=patient,
        role="consulting",
        valid_from=now - timedelta(days=30),
        valid_until=now - timedelta(days=1),
    )
    future = CareRelationship.objects.create(
        doctor=doctor, patient=patient, role="referring", valid_from=now + timedelta(days=1)
    )
    active = set(CareRelationship.objects.active())
    assert active == {current}
    assert not expired.is_active()
    assert not future.is_active()
    assert future.is_active(now + timedelta(days=2))


def test_the_database_refuses_a_period_that_ends_before_it_starts() -> None:
    doctor, patient = make_doctor(), make_patient()
    now = timezone.now()
    with pytest.raises(IntegrityError):
        CareRelationship.objects.create(
            doctor=doctor, patient=patient, role="treating", valid_from=now, valid_until=now
        )


def test_only_doctors_can_have_care_relationships() -> None:
    admin = User.objects.create_user(username="it.admin", role=Role.ADMIN)
    relationship = CareRelationship(doctor=admin, patient=make_patient(), role="treating")
    with pytest.raises(ValidationError):
        relationship.full_clean()


def test_usernames_are_one_account_whatever_the_case() -> None:
    User.objects.create_user(username="Dr.Martin", role=Role.DOCTOR)
    assert User.objects.get_by_natural_key("DR.MARTIN").username == "dr.martin"


def test_a_patient_with_documents_cannot_be_deleted(vault_home) -> None:
    from django.db.models import ProtectedError

    from vigie.records.testing import make_document

    patient = make_patient()
    make_document(patient)
    with pytest.raises(ProtectedError):
        patient.delete()
