"""Issue 21 part 1: the inbox marks a lab result's worst flag ("critique", "anormal").

A marker is derived from sealed values, so it is a disclosure: it goes through the door
(portal/door.py inbox_listing): the page's `inbox.view` events name the documents whose
flags were read and are durable before anything is decrypted; it is not a read.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from vigie.accounts.models import User
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.portal import door, inbox
from vigie.portal.testing import relate
from vigie.portal.views import inbox as inbox_views
from vigie.records.models import Document, Patient
from vigie.records.results import ResultSet
from vigie.records.results_store import open_results
from vigie.records.testing import make_document, make_lab_document, make_patient, sample_results

pytestmark = pytest.mark.django_db

INBOX = reverse("portal:inbox")


@pytest.fixture
def patient(doctor: User) -> Patient:
    patient = make_patient("MARTIN")
    relate(doctor, patient)
    return patient


def row_of(body: str, document: Document) -> str:
    """The inbox row that links to `document`."""
    link = reverse("portal:document_viewer", args=[document.pk])
    rows = [row for row in re.split(r"<tr\b", body) if f'href="{link}"' in row]
    assert len(rows) == 1, document.title
    return rows[0].split("</tr>")[0]


def spy_on_opening(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the documents whose values the door opens, in order."""
    opened: list[str] = []

    def spy(document: Document) -> ResultSet | None:
        opened.append(document.pk)
        return open_results(document)

    monkeypatch.setattr(door, "open_results", spy)
    return opened


def test_the_inbox_marks_critical_and_abnormal_lab_results_in_words(
    doctor: User, signed_in, patient: Patient
) -> None:
    critical = make_lab_document(patient, sample_results("1.9", "LL"), title="Kaliémie basse")
    abnormal = make_lab_document(patient, sample_results("5.9", "H"), title="Kaliémie haute")
    normal = make_lab_document(patient, sample_results("4.1", ""), title="Kaliémie normale")
    letter = make_document(patient, title="Courrier de sortie")
    body = signed_in(doctor).get(INBOX).content.decode()
    assert "critique" in row_of(body, critical)
    assert "‼" in row_of(body, critical)
    assert "anormal" in row_of(body, abnormal)
    assert "critique" not in row_of(body, abnormal)
    for plain in (normal, letter):
        assert "result-marker" not in row_of(body, plain), plain.title


def test_the_flags_are_read_only_after_their_audit_event_is_stored(
    doctor: User, signed_in, patient: Patient, monkeypatch
) -> None:
    lab = make_lab_document(patient, sample_results("7.2", "HH"))
    letter = make_document(patient, title="Courrier")
    opened: list[str] = []

    def open_after_audit(document: Document) -> ResultSet | None:
        # The event naming this document must already be stored when its values open.
        event = AuditEvent.objects.get(action="inbox.view", patient_id=patient.pk)
        assert event.extra["flags_read"] == [document.pk]
        opened.append(document.pk)
        return open_results(document)

    monkeypatch.setattr(door, "open_results", open_after_audit)
    body = signed_in(doctor).get(INBOX).content.decode()
    assert "critique" in row_of(body, lab)
    assert opened == [lab.pk]
    event = AuditEvent.objects.get(action="inbox.view")
    assert event.extra == {"documents": 2, "page": 1, "flags_read": [lab.pk]}
    assert letter.pk not in event.extra["flags_read"]


def test_attack_no_flag_is_shown_or_decrypted_when_the_audit_cannot_be_written(
    doctor: User, signed_in, patient: Patient, monkeypatch
) -> None:
    make_lab_document(patient, sample_results("7.2", "HH"), title="Kaliémie")

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AuditUnavailable("disk full")

    def must_not_open(document: Document) -> None:
        raise AssertionError("values decrypted without an audit event")

    monkeypatch.setattr(door, "record", unavailable)
    monkeypatch.setattr(door, "open_results", must_not_open)
    response = signed_in(doctor).get(INBOX)
    assert response.status_code == 503
    body = response.content.decode()
    for hidden in ("critique", "anormal", "result-marker", "Kaliémie"):
        assert hidden not in body, hidden


def test_showing_a_marker_does_not_count_as_opening_the_document(
    doctor: User, signed_in, patient: Patient
) -> None:
    lab = make_lab_document(patient, sample_results("7.2", "HH"))
    client = signed_in(doctor)
    client.get(INBOX)
    body = client.get(INBOX).content.decode()
    assert "critique" in row_of(body, lab)
    assert list(inbox.unread(doctor)) == [lab]
    assert not AuditEvent.objects.filter(action__startswith="document.").exists()


def test_attack_another_doctors_critical_result_is_never_listed_nor_its_flags_read(
    doctor: User, colleague: User, signed_in, patient: Patient, monkeypatch
) -> None:
    theirs = make_patient("SECRET")
    relate(colleague, theirs)
    hidden = make_lab_document(theirs, sample_results("1.1", "LL"), title="Kaliémie secrète")
    mine = make_lab_document(patient, sample_results("5.9", "H"))
    opened = spy_on_opening(monkeypatch)
    body = signed_in(doctor).get(INBOX).content.decode()
    assert "Kaliémie secrète" not in body
    assert "critique" not in body
    assert opened == [mine.pk]
    listed = AuditEvent.objects.filter(action="inbox.view")
    assert [e.patient_id for e in listed] == [patient.pk]
    assert [e.extra["flags_read"] for e in listed] == [[mine.pk]]
    assert hidden.pk not in str([e.extra for e in listed])


def test_only_the_current_pages_flags_are_read(
    doctor: User, signed_in, patient: Patient, monkeypatch
) -> None:
    older = make_lab_document(patient, sample_results("5.9", "H"), title="Ancien bilan")
    Document.objects.filter(pk=older.pk).update(received_at=older.received_at.replace(year=2025))
    newer = make_lab_document(patient, sample_results("1.9", "LL"), title="Nouveau bilan")
    monkeypatch.setattr(inbox_views, "PAGE_SIZE", 1)
    opened = spy_on_opening(monkeypatch)
    client: Client = signed_in(doctor)
    client.get(INBOX)
    assert opened == [newer.pk]
    client.get(INBOX, {"page": 2})
    assert opened == [newer.pk, older.pk]
    flags = [
        e.extra["flags_read"] for e in AuditEvent.objects.filter(action="inbox.view").order_by("pk")
    ]
    assert flags == [[newer.pk], [older.pk]]


def test_the_viewer_shows_the_marker_beside_the_title(
    doctor: User, signed_in, patient: Patient
) -> None:
    lab = make_lab_document(patient, sample_results("7.2", "HH"))
    body = signed_in(doctor).get(reverse("portal:document_viewer", args=[lab.pk])).content
    title = body.decode().split('<h1 class="document-title">')[1].split("</h1>")[0]
    assert "critique" in title
