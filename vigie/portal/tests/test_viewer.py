"""The viewer page: the document first, previous / next in the timeline the doctor came from
(its filter and order kept), shortcuts listed, the phone's "open the PDF" button."""

from __future__ import annotations

import re
from datetime import date

import pytest
from django.urls import reverse

from vigie.portal.testing import relate
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient(doctor):
    patient = make_patient("VIEWER")
    relate(doctor, patient)
    return patient


@pytest.fixture
def timeline_docs(patient):
    """Four documents, newest first: scanner (june), lab (may), letter (april), lab (march)."""
    return [
        make_document(
            patient, title="Scanner", kind="imaging_report", clinical_date=date(2026, 6, 1)
        ),
        make_document(patient, title="Lab mai", clinical_date=date(2026, 5, 1)),
        make_document(
            patient, title="Courrier", kind="consultation_letter", clinical_date=date(2026, 4, 1)
        ),
        make_document(patient, title="Lab mars", clinical_date=date(2026, 3, 1)),
    ]


def viewer(client, document, query: str = ""):
    url = reverse("portal:document_viewer", args=[document.pk]) + (f"?{query}" if query else "")
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def link(body: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}"[^>]*href="([^"]+)"', body)
    return found.group(1).replace("&amp;", "&") if found else None


def test_it_steps_through_the_patients_timeline_newest_first(
    doctor, signed_in, timeline_docs
) -> None:
    scanner, lab_may, letter, lab_march = timeline_docs
    client = signed_in(doctor)
    body = viewer(client, lab_may)
    assert link(body, "prev") == reverse("portal:document_viewer", args=[scanner.pk])
    assert link(body, "next") == reverse("portal:document_viewer", args=[letter.pk])
    assert "2 sur 4" in body
    first = viewer(client, scanner)
    assert link(first, "prev") is None
    last = viewer(client, lab_march)
    assert link(last, "next") is None


def test_previous_and_next_keep_the_timelines_filter_and_order(
    doctor, signed_in, timeline_docs
) -> None:
    _scanner, lab_may, _letter, lab_march = timeline_docs
    client = signed_in(doctor)
    query = "kind=lab_result&sort=date"
    body = viewer(client, lab_march, query)
    # Labs only, oldest first: March, then May, and the letter between them is skipped.
    assert link(body, "next") == reverse("portal:document_viewer", args=[lab_may.pk]) + f"?{query}"
    assert link(body, "prev") is None
    assert "1 sur 2" in body
    # The way back to the list keeps the filter too.
    back = reverse("portal:patient_detail", args=[lab_march.patient.public_id]) + f"?{query}"
    assert f'href="{back.replace("&", "&amp;")}"' in body


def test_the_timeline_links_carry_its_filter_to_the_viewer(
    doctor, signed_in, timeline_docs, patient
) -> None:
    client = signed_in(doctor)
    body = client.get(
        reverse("portal:patient_detail", args=[patient.public_id]), {"kind": "lab_result"}
    ).content.decode()
    assert f"{timeline_docs[1].pk}/?kind=lab_result" in body


def test_a_document_outside_the_filter_has_no_neighbours(doctor, signed_in, timeline_docs) -> None:
    scanner = timeline_docs[0]
    body = viewer(signed_in(doctor), scanner, "kind=lab_result")
    assert link(body, "prev") is None
    assert link(body, "next") is None


def test_a_wrong_filter_in_the_viewer_link_is_ignored_not_an_error(
    doctor, signed_in, timeline_docs
) -> None:
    body = viewer(signed_in(doctor), timeline_docs[1], "date_from=2026-06-01&date_to=2026-01-01")
    assert link(body, "prev") is None
    assert link(body, "next") is None
    assert timeline_docs[1].title in body


def test_it_lists_the_shortcuts_and_loads_the_viewer_script(
    doctor, signed_in, timeline_docs
) -> None:
    body = viewer(signed_in(doctor), timeline_docs[1])
    assert "Raccourcis clavier" in body
    for key in ("<kbd>j</kbd>", "<kbd>k</kbd>", "<kbd>p</kbd>", "<kbd>d</kbd>"):
        assert key in body
    assert '<script src="/static/vigie/viewer.js" defer></script>' in body
    assert 'data-shortcut="print"' in body
    # The phone's way to the PDF: the browser's own viewer, through the same door.
    content = reverse("portal:document_content", args=[timeline_docs[1].pk])
    assert f'href="{content}" target="_blank" rel="noopener"' in body


def test_previous_and_next_stay_within_the_patient(doctor, signed_in, timeline_docs) -> None:
    other = make_patient("AUTRE")
    relate(doctor, other)
    theirs = make_document(other, title="Autre patient", clinical_date=date(2026, 5, 2))
    body = viewer(signed_in(doctor), timeline_docs[1])
    assert theirs.pk not in body
