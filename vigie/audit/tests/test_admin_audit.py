"""IT's changes in the admin — access grants and revocations above all — are audited."""

from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.records.models import CareRelationship
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def it_admin(settings) -> Client:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    admin = make_user("it.admin", role=Role.ADMIN, is_staff=True, is_superuser=True)
    client = Client()
    log_in(client, admin)
    return client


def _grant(client: Client, doctor_id: int, patient_id: int) -> int:
    response = client.post(
        "/admin/records/carerelationship/add/",
        {
            "doctor": doctor_id,
            "patient": patient_id,
            "role": "treating",
            "valid_from_0": "2026-11-01",
            "valid_from_1": "08:00:00",
            "valid_until_0": "",
            "valid_until_1": "",
        },
    )
    return response.status_code


def test_granting_access_in_the_admin_is_audited_with_the_patient(it_admin: Client) -> None:
    doctor, patient = make_user("dr.grant"), make_patient()
    assert _grant(it_admin, doctor.pk, patient.pk) == 302
    relationship = CareRelationship.objects.get(doctor=doctor, patient=patient)
    event = AuditEvent.objects.get(action="access.grant")
    assert event.actor_username == "it.admin"
    assert event.patient_ipp == patient.ipp
    assert event.extra["object_id"] == str(relationship.pk)


def test_revoking_access_in_the_admin_is_audited(it_admin: Client) -> None:
    relationship = CareRelationship.objects.create(
        doctor=make_user("dr.revoke"), patient=make_patient(), role="treating"
    )
    response = it_admin.post(
        f"/admin/records/carerelationship/{relationship.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not CareRelationship.objects.filter(pk=relationship.pk).exists()
    assert (
        AuditEvent.objects.filter(
            action="access.revoke", patient_ipp=relationship.patient.ipp
        ).count()
        == 1
    )


def test_an_access_grant_that_cannot_be_audited_is_not_made(it_admin: Client) -> None:
    # Fail closed: an unaudited grant would be an invisible door into a patient's record.
    doctor, patient = make_user("dr.nolog"), make_patient()
    with (
        mock.patch("vigie.audit.admin_audit.record", side_effect=AuditUnavailable("down")),
        pytest.raises(AuditUnavailable),
    ):
        _grant(it_admin, doctor.pk, patient.pk)
    assert not CareRelationship.objects.filter(doctor=doctor, patient=patient).exists()


def test_editing_a_patient_in_the_admin_is_audited(it_admin: Client) -> None:
    patient = make_patient("DUPONT")
    response = it_admin.post(
        f"/admin/records/patient/{patient.pk}/change/",
        {
            "ipp": patient.ipp,
            "ins": patient.ins,
            "family_name": "DUPONT-MARTIN",
            "given_names": patient.given_names,
            "birth_date": "1985-03-14",
            "sex": "F",
            "address_line": "",
            "postal_code": "",
            "city": "",
        },
    )
    assert response.status_code == 302, response.content[:500]
    event = AuditEvent.objects.get(action="admin.records.patient.change")
    assert "family_name" in event.extra["change"] or "Family name" in event.extra["change"]
