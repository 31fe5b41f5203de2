"""The results inbox: unopened documents across the doctor's patients, read state per doctor
and per document (set by the door's own audit events), "mark as read", the counts."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.portal import inbox
from vigie.portal.testing import grant, relate
from vigie.records.models import Document
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

INBOX = reverse("portal:inbox")


@pytest.fixture
def patient(doctor):
    patient = make_patient("MARTIN")
    relate(doctor, patient)
    return patient


def read(client, document: Document) -> None:
    response = client.get(reverse("portal:document_content", args=[document.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"%PDF")


def mark_one(client: Client, document: Document, **extra: str):
    return client.post(reverse("portal:mark_document_read", args=[document.pk]), extra)


def mark_patient(client: Client, patient, before: str | None = None, **extra: str):
    data = dict(extra)
    if before is not None:
        data["before"] = before
    return client.post(reverse("portal:mark_patient_read", args=[patient.public_id]), data)


def test_it_lists_unopened_documents_newest_arrival_first(doctor, signed_in, patient) -> None:
    older = make_document(patient, title="Bilan lipidique", source_system="LABO-NORD")
    Document.objects.filter(pk=older.pk).update(received_at=timezone.now() - timedelta(hours=2))
    make_document(
        patient,
        title="Scanner thoracique",
        kind="imaging_report",
        clinical_date=date(2026, 11, 20),
        source_system="RIS-CHU",
    )
    body = signed_in(doctor).get(INBOX).content.decode()
    assert body.index("Scanner thoracique") < body.index("Bilan lipidique")
    for shown in ("MARTIN", "RIS-CHU", "LABO-NORD", "Compte rendu d&#x27;imagerie", "20/11/2026"):
        assert shown in body, shown
    event = AuditEvent.objects.get(action="inbox.view")
    assert (event.patient_id, event.patient_ipp) == (patient.pk, patient.ipp)
    assert event.extra == {"documents": 2, "page": 1}


def test_each_patient_on_the_page_gets_the_inbox_in_their_audit_report(
    doctor, signed_in, patient
) -> None:
    other = make_patient("BERNARD")
    relate(doctor, other)
    make_document(patient)
    make_document(other)
    make_document(other)
    signed_in(doctor).get(INBOX)
    events = {
        e.patient_ipp: e.extra["documents"] for e in AuditEvent.objects.filter(action="inbox.view")
    }
    assert events == {patient.ipp: 1, other.ipp: 2}


def test_an_empty_inbox_records_no_disclosure(colleague, signed_in) -> None:
    body = signed_in(colleague).get(INBOX).content.decode()
    assert "Rien de nouveau" in body
    assert not AuditEvent.objects.filter(action="inbox.view").exists()


def test_attack_another_doctors_patients_never_appear_in_the_inbox(
    doctor, colleague, signed_in, patient
) -> None:
    theirs = make_patient("SECRET")
    relate(colleague, theirs)
    make_document(theirs, title="Sérologie confidentielle")
    ended = make_patient("ANCIEN")
    relate(doctor, ended, expired=True)
    make_document(ended, title="Compte rendu ancien")
    make_document(patient, title="Bilan de mon patient")
    client = signed_in(doctor)
    body = client.get(INBOX).content.decode()
    assert "Bilan de mon patient" in body
    for hidden in ("SECRET", "Sérologie confidentielle", "ANCIEN", "Compte rendu ancien"):
        assert hidden not in body
    assert inbox.unread_total(doctor) == 1
    # Nor on the home page's counts, nor in the header.
    home = client.get(reverse("portal:home")).content.decode()
    assert 'class="badge count">1<' in home
    assert "SECRET" not in home


def test_an_emergency_grant_puts_its_patient_in_the_inbox_until_it_ends(doctor, signed_in) -> None:
    stranger = make_patient("URGENCE")
    make_document(stranger, title="ECG")
    assert inbox.unread_total(doctor) == 0
    access = grant(doctor, stranger)
    assert inbox.unread_total(doctor) == 1
    access.expires_at = timezone.now() - timedelta(seconds=1)
    access.save()
    assert inbox.unread_total(doctor) == 0


def test_opening_a_document_through_the_door_takes_it_out_of_the_inbox(
    doctor, colleague, signed_in, patient
) -> None:
    relate(colleague, patient)
    viewed = make_document(patient, title="Vu dans le lecteur")
    downloaded = make_document(patient, title="Téléchargé")
    waiting = make_document(patient, title="Pas encore ouvert")
    client = signed_in(doctor)
    read(client, viewed)
    response = client.get(reverse("portal:document_download", args=[downloaded.pk]))
    b"".join(response.streaming_content)
    body = client.get(INBOX).content.decode()
    assert waiting.title in body
    assert viewed.title not in body
    assert downloaded.title not in body
    # Per doctor: the colleague still has all three to read.
    assert inbox.unread_total(colleague) == 3
    assert inbox.unread_total(doctor) == 1


def test_loading_pages_does_not_mark_anything_read(doctor, signed_in, patient) -> None:
    document = make_document(patient, title="Résultat")
    client = signed_in(doctor)
    for _ in range(3):
        client.get(INBOX)
        client.get(reverse("portal:patient_detail", args=[patient.public_id]))
        client.get(reverse("portal:patient_detail", args=[patient.public_id]), {"kind": "other"})
    # The viewer page alone (its frame not loaded, as when a phone cannot show a PDF) neither.
    client.get(reverse("portal:document_viewer", args=[document.pk]))
    assert inbox.unread_total(doctor) == 1


def test_a_refused_read_does_not_count_as_opened(doctor, signed_in) -> None:
    later = make_patient("PLUSTARD")
    document = make_document(later, title="Avant la prise en charge")
    client = signed_in(doctor)
    assert client.get(reverse("portal:document_content", args=[document.pk])).status_code == 404
    assert AuditEvent.objects.filter(action="document.read.denied", actor_id=doctor.pk).exists()
    relate(doctor, later)
    assert inbox.unread_total(doctor) == 1


def test_it_marks_one_document_read_audited(doctor, signed_in, patient) -> None:
    first = make_document(patient, title="Premier")
    make_document(patient, title="Second")
    client = signed_in(doctor)
    response = mark_one(client, first)
    assert response.status_code == 302
    assert response["Location"] == INBOX
    event = AuditEvent.objects.get(action="document.marked_read")
    assert (event.actor_id, event.document_id, event.patient_id) == (
        doctor.pk,
        first.pk,
        patient.pk,
    )
    assert event.extra == {"scope": "document"}
    page = client.get(INBOX).content.decode()
    assert "« Premier » est marqué comme lu." in page
    body = page[page.index("<main") :]
    assert "Premier" not in body
    assert "Second" in body
    # Marking it again records nothing more.
    mark_one(client, first)
    assert AuditEvent.objects.filter(action="document.marked_read").count() == 1


def test_attack_marking_another_doctors_document_is_404_and_marks_nothing(
    doctor, colleague, signed_in
) -> None:
    theirs = make_patient("AUTRE")
    relate(colleague, theirs)
    document = make_document(theirs)
    client = signed_in(doctor)
    assert mark_one(client, document).status_code == 404
    assert mark_patient(client, theirs, before=timezone.now().isoformat()).status_code == 404
    assert not AuditEvent.objects.filter(action="document.marked_read").exists()
    assert AuditEvent.objects.filter(action="document.read.denied", actor_id=doctor.pk).exists()
    assert AuditEvent.objects.filter(action="patient.view.denied", actor_id=doctor.pk).exists()


def test_attack_a_cross_site_post_without_the_csrf_token_marks_nothing(doctor, patient) -> None:
    from vigie.accounts.testing import log_in

    document = make_document(patient)
    client = Client(enforce_csrf_checks=True)
    log_in(client, doctor)
    assert mark_one(client, document).status_code == 403
    assert mark_patient(client, patient, before=timezone.now().isoformat()).status_code == 403
    assert inbox.unread_total(doctor) == 1


def test_marking_needs_a_post(doctor, signed_in, patient) -> None:
    document = make_document(patient)
    client = signed_in(doctor)
    assert client.get(reverse("portal:mark_document_read", args=[document.pk])).status_code == 405
    assert inbox.unread_total(doctor) == 1


def test_it_marks_a_patients_documents_up_to_the_page_it_drew(doctor, signed_in, patient) -> None:
    other = make_patient("AUTREPATIENT")
    relate(doctor, other)
    make_document(other, title="Autre patient")
    make_document(patient, title="Premier")
    make_document(patient, title="Deuxième")
    drawn = timezone.now()
    arrived_since = make_document(patient, title="Arrivé depuis")
    Document.objects.filter(pk=arrived_since.pk).update(received_at=drawn + timedelta(seconds=5))
    client = signed_in(doctor)
    response = mark_patient(client, patient, before=drawn.isoformat())
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="document.marked_read", actor_id=doctor.pk).count() == 2
    page = client.get(INBOX).content.decode()
    assert "2 documents de MARTIN Camille sont marqués comme lus." in page
    body = page[page.index("<main") :]
    assert "Arrivé depuis" in body  # not on the page the doctor saw: still new
    assert "Autre patient" in body
    assert "Premier" not in body


def test_marking_a_patient_without_the_pages_time_marks_nothing(doctor, signed_in, patient) -> None:
    make_document(patient)
    client = signed_in(doctor)
    for before in (None, "", "hier"):
        response = mark_patient(client, patient, before=before)
        assert response.status_code == 302
    assert inbox.unread_total(doctor) == 1
    body = client.get(INBOX).content.decode()
    assert "rien n&#x27;a été marqué comme lu" in body


def test_attack_next_pointing_off_site_sends_back_to_the_inbox(doctor, signed_in, patient) -> None:
    document = make_document(patient)
    client = signed_in(doctor)
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = mark_one(client, document, next=target)
        assert response["Location"] == INBOX, target
    page = reverse("portal:patient_detail", args=[patient.public_id])
    assert mark_one(client, make_document(patient), next=page)["Location"] == page


def test_it_counts_unread_per_patient_and_in_the_header(doctor, signed_in, patient) -> None:
    other = make_patient("BERNARD")
    relate(doctor, other)
    for _ in range(3):
        make_document(patient)
    opened = make_document(other)
    make_document(other)
    client = signed_in(doctor)
    read(client, opened)
    assert inbox.unread_counts(doctor, [patient, other]) == {patient.pk: 3, other.pk: 1}
    home = client.get(reverse("portal:home")).content.decode()
    header = home[home.index("<header") : home.index("</header>")]
    assert 'class="inbox-link"' in header
    assert 'class="badge count">4<' in header
    rows = home[home.index("<tbody>") :]
    martin = rows[rows.index("MARTIN") :]
    assert 'class="badge count">3<' in martin[: martin.index("</tr>")]
    bernard = rows[rows.index("BERNARD") :]
    assert 'class="badge count">1<' in bernard[: bernard.index("</tr>")]


def test_the_header_shows_no_count_to_other_roles(admin_user, signed_in) -> None:
    body = signed_in(admin_user).get(reverse("portal:home")).content.decode()
    assert 'class="inbox-link"' not in body


def test_the_inbox_shows_nothing_when_it_cannot_be_audited(
    doctor, signed_in, patient, monkeypatch
) -> None:
    from vigie.portal import door

    make_document(patient, title="Bilan lipidique")

    def unavailable(*args, **kwargs):
        raise AuditUnavailable("disk full")

    monkeypatch.setattr(door, "record", unavailable)
    response = signed_in(doctor).get(INBOX)
    assert response.status_code == 503
    assert "Bilan lipidique" not in response.content.decode()


def test_the_inbox_answers_503_during_a_lockdown(doctor, signed_in, patient) -> None:
    from vigie.guard import lockdown

    make_document(patient, title="Bilan lipidique")
    lockdown.engage("exposure")
    client = signed_in(doctor)
    response = client.get(INBOX)
    assert response.status_code == 503
    assert "Bilan lipidique" not in response.content.decode()
    assert "MARTIN" not in response.content.decode()


def test_the_timeline_page_offers_to_mark_the_patients_new_documents(
    doctor, signed_in, patient
) -> None:
    make_document(patient)
    make_document(patient)
    client = signed_in(doctor)
    body = client.get(reverse("portal:patient_detail", args=[patient.public_id])).content.decode()
    assert "Marquer les 2 nouveaux documents comme lus" in body


def test_the_auditors_fhir_export_does_not_call_marking_a_read(doctor, signed_in, patient) -> None:
    from vigie.audit.reports import fhir_audit_event

    document = make_document(patient)
    client = signed_in(doctor)
    mark_one(client, document)
    read(client, document)
    marked = AuditEvent.objects.get(action="document.marked_read")
    opened = AuditEvent.objects.get(action="document.read")
    assert fhir_audit_event(marked)["action"] == "E"
    assert fhir_audit_event(opened)["action"] == "R"


def test_other_roles_get_no_inbox(admin_user, auditor, signed_in) -> None:
    for user in (admin_user, auditor):
        response = signed_in(user).get(INBOX)
        assert response.status_code == 200
        assert "Seuls les médecins" in response.content.decode()
    assert not AuditEvent.objects.filter(action="inbox.view").exists()
