"""The patient page: header, timeline filters, "new since your last visit"."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from vigie.audit.models import AuditEvent
from vigie.portal.testing import relate
from vigie.records.models import Document, PatientVisit
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient(doctor):
    patient = make_patient("MARTIN")
    relate(doctor, patient)
    return patient


def page(client, patient, **params):
    return client.get(reverse("portal:patient_detail", args=[patient.public_id]), params)


def test_it_shows_the_patient_header_and_timeline(doctor, signed_in, patient) -> None:
    make_document(patient, title="Bilan lipidique", clinical_date=date(2026, 1, 5))
    make_document(
        patient, title="Scanner thoracique", kind="imaging_report", clinical_date=date(2026, 6, 1)
    )
    response = page(signed_in(doctor), patient)
    assert response.status_code == 200
    body = response.content.decode()
    for value in ("MARTIN", patient.ipp, patient.ins, "Bilan lipidique", "Scanner thoracique"):
        assert value in body
    assert body.index("Scanner thoracique") < body.index("Bilan lipidique")  # most recent first
    assert 'class="emergency-banner"' not in body
    assert AuditEvent.objects.get(action="patient.view").extra["basis"] == "care_relationship"


def test_it_filters_by_kind_and_date_range(doctor, signed_in, patient) -> None:
    make_document(patient, title="Lab janvier", clinical_date=date(2026, 1, 5))
    make_document(patient, title="Lab juin", clinical_date=date(2026, 6, 5))
    make_document(
        patient, title="Scanner juin", kind="imaging_report", clinical_date=date(2026, 6, 6)
    )
    client = signed_in(doctor)
    body = page(client, patient, kind="lab_result").content.decode()
    assert "Lab janvier" in body
    assert "Lab juin" in body
    assert "Scanner juin" not in body
    body = page(client, patient, date_from="2026-06-01", date_to="2026-06-05").content.decode()
    assert "Lab juin" in body
    assert "Lab janvier" not in body
    assert "Scanner juin" not in body


def test_it_ignores_invalid_filters_instead_of_failing(doctor, signed_in, patient) -> None:
    make_document(patient, title="Lab janvier", clinical_date=date(2026, 1, 5))
    response = page(signed_in(doctor), patient, kind="nonsense", date_from="2026-13-45")
    assert response.status_code == 200
    assert "Lab janvier" in response.content.decode()
    response = page(signed_in(doctor), patient, date_from="2026-06-01", date_to="2026-01-01")
    assert response.status_code == 200


def test_it_marks_documents_new_since_the_last_visit(doctor, signed_in, patient) -> None:
    old = make_document(patient, title="Ancien compte rendu")
    client = signed_in(doctor)
    first = page(client, patient).content.decode()
    assert "badge new" not in first  # a first visit has nothing to compare with
    visit = PatientVisit.objects.get(doctor=doctor, patient=patient)
    # The previous visit was yesterday; a document arrived since.
    PatientVisit.objects.filter(pk=visit.pk).update(
        last_visit_at=timezone.now() - timedelta(days=1)
    )
    Document.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=2))
    make_document(patient, title="Nouveau résultat")
    body = page(client, patient).content.decode()
    new_row = body[body.index("Nouveau résultat") :]
    assert "badge new" in new_row[: new_row.index("</tr>")]
    old_row = body[body.index("Ancien compte rendu") :]
    assert "badge new" not in old_row[: old_row.index("</tr>")]
    # And the visit moved forward: reloading shows nothing new.
    assert "badge new" not in page(client, patient).content.decode()


def test_last_visit_is_per_doctor(doctor, colleague, signed_in, patient) -> None:
    relate(colleague, patient)
    page(signed_in(doctor), patient)
    assert PatientVisit.objects.filter(doctor=doctor).count() == 1
    assert not PatientVisit.objects.filter(doctor=colleague).exists()


def test_an_out_of_scope_patient_page_is_404_and_audited(doctor, signed_in) -> None:
    stranger = make_patient()
    response = page(signed_in(doctor), stranger)
    assert response.status_code == 404
    assert stranger.family_name not in response.content.decode()
    assert AuditEvent.objects.get(action="patient.view.denied").patient_ipp == stranger.ipp
    assert not PatientVisit.objects.exists()


def test_it_shows_nothing_when_the_visit_cannot_be_audited(
    doctor, signed_in, patient, monkeypatch
) -> None:
    from vigie.audit.log import AuditUnavailable
    from vigie.portal.views import patients as patient_views

    make_document(patient, title="Bilan lipidique")

    def unavailable(*args, **kwargs):
        raise AuditUnavailable("disk full")

    monkeypatch.setattr(patient_views, "record", unavailable)
    response = page(signed_in(doctor), patient)
    assert response.status_code == 503
    body = response.content.decode()
    assert "Bilan lipidique" not in body
    assert patient.family_name not in body
