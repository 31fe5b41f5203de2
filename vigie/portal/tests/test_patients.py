"""The patient page: header, timeline filters and order, what this doctor has not opened."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from vigie.audit.models import AuditEvent
from vigie.portal.testing import relate
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


def test_it_filters_by_several_kinds_at_once(doctor, signed_in, patient) -> None:
    make_document(patient, title="Lab janvier")
    make_document(patient, title="Scanner juin", kind="imaging_report")
    make_document(patient, title="Courrier mars", kind="consultation_letter")
    client = signed_in(doctor)
    body = page(client, patient, kind=["lab_result", "imaging_report"]).content.decode()
    assert "Lab janvier" in body
    assert "Scanner juin" in body
    assert "Courrier mars" not in body


def test_it_filters_by_words_of_the_title_author_or_source(doctor, signed_in, patient) -> None:
    make_document(patient, title="Bilan lipidique", author="Dr Roux")
    make_document(patient, title="Scanner thoracique", author="Dr Blanc", source_system="RIS")
    client = signed_in(doctor)
    body = page(client, patient, text="LIPID").content.decode()
    assert "Bilan lipidique" in body
    assert "Scanner thoracique" not in body
    body = page(client, patient, text="blanc ris").content.decode()
    assert "Scanner thoracique" in body
    assert "Bilan lipidique" not in body


def test_it_sorts_by_date_either_way_and_by_kind(doctor, signed_in, patient) -> None:
    make_document(patient, title="Lab ancien", clinical_date=date(2025, 1, 5))
    make_document(
        patient, title="Scanner récent", kind="imaging_report", clinical_date=date(2026, 6, 1)
    )
    make_document(
        patient, title="Courrier moyen", kind="consultation_letter", clinical_date=date(2025, 9, 1)
    )
    client = signed_in(doctor)

    def order(**params: str) -> list[str]:
        body = page(client, patient, **params).content.decode()
        titles = ["Lab ancien", "Scanner récent", "Courrier moyen"]
        return sorted(titles, key=body.index)

    assert order() == ["Scanner récent", "Courrier moyen", "Lab ancien"]
    assert order(sort="date") == ["Lab ancien", "Courrier moyen", "Scanner récent"]
    # By kind: the stored codes' order (consultation_letter, imaging_report, lab_result).
    assert order(sort="kind") == ["Courrier moyen", "Scanner récent", "Lab ancien"]


def test_a_reversed_date_range_is_an_error_that_lists_nothing(doctor, signed_in, patient) -> None:
    make_document(patient, title="Lab janvier", clinical_date=date(2026, 1, 5))
    response = page(signed_in(doctor), patient, date_from="2026-06-01", date_to="2026-01-01")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Lab janvier" not in body
    assert "La date de début est postérieure à la date de fin." in body


def test_an_invalid_filter_is_an_error_not_a_crash(doctor, signed_in, patient) -> None:
    make_document(patient, title="Lab janvier", clinical_date=date(2026, 1, 5))
    response = page(signed_in(doctor), patient, kind="nonsense", date_from="2026-13-45")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Lab janvier" not in body
    assert 'class="errorlist"' in body


def test_it_marks_the_documents_this_doctor_has_not_opened(
    doctor, colleague, signed_in, patient
) -> None:
    relate(colleague, patient)
    seen = make_document(patient, title="Ancien compte rendu")
    make_document(patient, title="Nouveau résultat")
    client = signed_in(doctor)
    assert client.get(reverse("portal:document_content", args=[seen.pk])).status_code == 200

    def is_new(body: str, title: str) -> bool:
        row = body[body.index(title) :]
        return "badge new" in row[: row.index("</tr>")]

    for _ in range(2):  # reloading the page changes nothing: only opening a document does
        body = page(client, patient).content.decode()
        assert is_new(body, "Nouveau résultat")
        assert not is_new(body, "Ancien compte rendu")
    # Per doctor: the colleague has opened neither.
    body = page(signed_in(colleague), patient).content.decode()
    assert is_new(body, "Ancien compte rendu")
    assert is_new(body, "Nouveau résultat")


def test_an_out_of_scope_patient_page_is_404_and_audited(doctor, signed_in) -> None:
    stranger = make_patient()
    response = page(signed_in(doctor), stranger)
    assert response.status_code == 404
    assert stranger.family_name not in response.content.decode()
    assert AuditEvent.objects.get(action="patient.view.denied").patient_ipp == stranger.ipp


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
