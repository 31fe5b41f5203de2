"""Break-the-glass: exact lookup only, justified and second-factor-confirmed grant, audit
event and alert, red banner, expiry."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.portal.testing import current_code, relate
from vigie.records import access
from vigie.records.models import EmergencyAccess
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

LOOKUP = "/emergency/"
CONFIRM = "/emergency/confirm"
JUSTIFICATION = "Admitted unconscious after a road accident, no relative reachable."


@pytest.fixture
def stranger():
    # A patient nobody in the tests cares for.
    return make_patient("INCONNU")


def look_up(client, **data):
    fields = {"ins": "", "ipp": "", "birth_date": ""}
    fields.update(data)
    return client.post(LOOKUP, fields)


def break_glass(client, doctor, **overrides):
    data = {
        "reason": "vital_emergency",
        "justification": JUSTIFICATION,
        "code": current_code(doctor),
    }
    data.update(overrides)
    return client.post(CONFIRM, data)


def test_it_has_stable_urls() -> None:
    assert reverse("portal:emergency_lookup") == LOOKUP
    assert reverse("portal:emergency_grant") == CONFIRM


def test_it_finds_a_patient_by_exact_ins(doctor, signed_in, stranger) -> None:
    client = signed_in(doctor)
    response = look_up(client, ins=stranger.ins)
    assert response.status_code == 302
    assert response["Location"] == CONFIRM
    page = client.get(CONFIRM).content.decode()
    assert stranger.family_name in page
    lookup = AuditEvent.objects.get(action="emergency.lookup")
    assert lookup.patient_ipp == stranger.ipp
    assert lookup.outcome == "success"


def test_it_finds_a_patient_by_ipp_and_birth_date(doctor, signed_in, stranger) -> None:
    response = look_up(
        signed_in(doctor), ipp=stranger.ipp, birth_date=stranger.birth_date.isoformat()
    )
    assert response.status_code == 302


def test_it_refuses_an_ipp_without_birth_date(doctor, signed_in, stranger) -> None:
    response = look_up(signed_in(doctor), ipp=stranger.ipp)
    assert response.status_code == 200
    assert stranger.family_name not in response.content.decode()
    assert not AuditEvent.objects.filter(action="emergency.lookup").exists()


def test_it_gives_one_answer_for_unknown_and_mismatched_identifiers(
    doctor, signed_in, stranger
) -> None:
    client = signed_in(doctor)
    wrong_birth = look_up(client, ipp=stranger.ipp, birth_date="1999-01-01")
    unknown = look_up(client, ipp="IPP-NOBODY", birth_date=stranger.birth_date.isoformat())
    assert wrong_birth.status_code == unknown.status_code == 200
    assert stranger.family_name not in wrong_birth.content.decode()
    # Same page, except for the echoed input and the per-response CSRF token.
    echoed = [stranger.ipp, "IPP-NOBODY", "1999-01-01", stranger.birth_date.isoformat()]

    def strip(response) -> str:
        body = re.sub(r'value="[A-Za-z0-9]{64}"', "", response.content.decode())
        for value in echoed:
            body = body.replace(value, "")
        return body

    assert strip(wrong_birth) == strip(unknown)


def test_a_doctor_cannot_find_patients_outside_scope_by_partial_name(
    doctor, signed_in, stranger
) -> None:
    client = signed_in(doctor)
    search = client.get(reverse("portal:home"), {"q": stranger.family_name[:4]})
    assert stranger.public_id not in search.content.decode()
    # The emergency form has no name field: a name in it is simply ignored.
    response = client.post(
        LOOKUP, {"ins": "", "ipp": "", "birth_date": "", "family_name": stranger.family_name}
    )
    assert response.status_code == 200
    assert stranger.public_id not in response.content.decode()


def test_it_grants_access_with_audit_event_and_alert(doctor, signed_in, stranger) -> None:
    document = make_document(stranger)
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    response = break_glass(client, doctor)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:patient_detail", args=[stranger.public_id])
    grant = EmergencyAccess.objects.get(doctor=doctor, patient=stranger)
    assert grant.expires_at - grant.granted_at == timedelta(hours=4)
    event = AuditEvent.objects.get(action="emergency.grant")
    assert event.actor_username == doctor.username
    assert event.patient_ipp == stranger.ipp
    assert event.extra["grant_id"] == grant.pk
    assert JUSTIFICATION in event.reason
    alert = Alert.objects.get(kind="emergency.access")
    assert alert.severity == "warning"
    assert alert.audience == "auditor"
    assert stranger.family_name not in alert.summary
    # The patient is now readable, with the red banner on every page.
    page = client.get(response["Location"]).content.decode()
    assert 'class="emergency-banner"' in page
    assert document.title in page
    viewer = client.get(reverse("portal:document_viewer", args=[document.pk])).content.decode()
    assert 'class="emergency-banner"' in viewer


def test_it_refuses_a_wrong_code_and_grants_nothing(doctor, signed_in, stranger) -> None:
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    response = break_glass(
        client, doctor, code="000000" if current_code(doctor) != "000000" else "111111"
    )
    assert response.status_code == 200
    assert not EmergencyAccess.objects.exists()
    assert not Alert.objects.filter(kind="emergency.access").exists()
    assert AuditEvent.objects.filter(action="emergency.grant.denied", outcome="denied").exists()
    assert (
        client.get(reverse("portal:patient_detail", args=[stranger.public_id])).status_code == 404
    )


def test_it_requires_a_real_justification(doctor, signed_in, stranger) -> None:
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    response = break_glass(client, doctor, justification="urgence")
    assert response.status_code == 200
    assert not EmergencyAccess.objects.exists()


def test_it_cannot_grant_without_a_lookup_first(doctor, signed_in, stranger) -> None:
    response = break_glass(signed_in(doctor), doctor)
    assert response.status_code == 302
    assert response["Location"] == LOOKUP
    assert not EmergencyAccess.objects.exists()


def test_it_sends_a_doctor_with_a_relationship_straight_to_the_patient(
    doctor, signed_in, stranger
) -> None:
    relate(doctor, stranger)
    response = look_up(signed_in(doctor), ins=stranger.ins)
    assert response["Location"] == reverse("portal:patient_detail", args=[stranger.public_id])
    assert not EmergencyAccess.objects.exists()


def test_it_ends_the_access_after_four_hours(doctor, signed_in, stranger, monkeypatch) -> None:
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    break_glass(client, doctor)
    grant = EmergencyAccess.objects.get()
    assert access.decide(
        doctor, "view", patient=stranger, at=grant.granted_at + timedelta(hours=3, minutes=59)
    ).allowed
    assert not access.decide(
        doctor, "view", patient=stranger, at=grant.granted_at + timedelta(hours=4)
    )
    later = grant.granted_at + timedelta(hours=4, minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    url = reverse("portal:patient_detail", args=[stranger.public_id])
    assert client.get(url).status_code == 404


def test_it_follows_the_configured_duration(doctor, signed_in, stranger, settings) -> None:
    settings.VIGIE_EMERGENCY_ACCESS_HOURS = 1
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    break_glass(client, doctor)
    grant = EmergencyAccess.objects.get()
    assert grant.expires_at - grant.granted_at == timedelta(hours=1)


@pytest.mark.parametrize("role_fixture", ["admin_user", "auditor"])
def test_admin_and_auditor_cannot_break_the_glass(
    role_fixture, request, signed_in, stranger
) -> None:
    user = request.getfixturevalue(role_fixture)
    client = signed_in(user)
    assert look_up(client, ins=stranger.ins).status_code == 403
    assert client.post(CONFIRM, {}).status_code == 403


def test_it_stores_no_grant_when_its_audit_event_cannot_be_written(
    doctor, signed_in, stranger, monkeypatch
) -> None:
    from vigie.audit.log import AuditUnavailable, record
    from vigie.portal import emergency

    def record_unless_grant(action, **kwargs):
        if action == "emergency.grant":
            raise AuditUnavailable("database is read-only")
        return record(action, **kwargs)

    monkeypatch.setattr(emergency, "record", record_unless_grant)
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    response = break_glass(client, doctor)
    assert response.status_code == 503
    assert not EmergencyAccess.objects.exists()
    assert not Alert.objects.filter(kind="emergency.access").exists()


def test_a_found_patient_cannot_be_granted_after_the_lookup_went_stale(
    doctor, signed_in, stranger
) -> None:
    from vigie.portal.views.emergency import CANDIDATE_KEY, CANDIDATE_TTL_SECONDS

    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    session = client.session
    session[CANDIDATE_KEY] = {
        "patient": stranger.pk,
        "at": session[CANDIDATE_KEY]["at"] - CANDIDATE_TTL_SECONDS - 1,
    }
    session.save()
    response = break_glass(client, doctor)
    assert response["Location"] == LOOKUP
    assert not EmergencyAccess.objects.exists()
