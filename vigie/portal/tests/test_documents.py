"""The one door: audit before the first byte, fail closed, damaged blobs, headers."""

from __future__ import annotations

import os

import pytest
from django.urls import reverse

from vigie import vault
from vigie.alerts.models import Alert
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.portal import door
from vigie.portal.testing import grant, relate
from vigie.records.content import stream_verified
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n" + b"x" * 200_000 + b"\n%%EOF\n"


@pytest.fixture
def mine(doctor):
    patient = make_patient("LECTURE")
    relate(doctor, patient)
    return make_document(patient, PDF)


def content_url(document):
    return reverse("portal:document_content", args=[document.pk])


def test_it_streams_the_pdf_inline_with_safe_headers(doctor, signed_in, mine) -> None:
    response = signed_in(doctor).get(content_url(mine))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == str(len(PDF))
    assert response["Content-Disposition"].startswith("inline")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert b"".join(response.streaming_content) == PDF


def test_it_lets_only_the_same_origin_frame_the_content(doctor, signed_in, mine) -> None:
    response = signed_in(doctor).get(content_url(mine))
    policy = response["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy
    assert "frame-ancestors 'none'" not in policy


def test_other_pages_stay_unframeable(doctor, signed_in, mine) -> None:
    response = signed_in(doctor).get(reverse("portal:document_viewer", args=[mine.pk]))
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


def test_it_downloads_as_attachment_and_records_a_download(doctor, signed_in, mine) -> None:
    response = signed_in(doctor).get(reverse("portal:document_download", args=[mine.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Disposition"].endswith('.pdf"')
    assert b"".join(response.streaming_content) == PDF
    event = AuditEvent.objects.get(action="document.download")
    assert event.document_id == mine.pk
    assert event.extra["basis"] == "care_relationship"


def test_it_records_the_read_before_the_first_byte(doctor, signed_in, mine, monkeypatch) -> None:
    seen_before_first_chunk = []

    def watched(document, **options):
        seen_before_first_chunk.append(
            AuditEvent.objects.filter(action="document.read", document_id=document.pk).exists()
        )
        yield from stream_verified(document, **options)

    monkeypatch.setattr(door, "stream_verified", watched)
    response = signed_in(doctor).get(content_url(mine))
    assert seen_before_first_chunk == [True]
    event = AuditEvent.objects.get(action="document.read")
    assert event.outcome == "success"
    assert event.patient_ipp == mine.patient.ipp
    assert event.extra == {
        "basis": "care_relationship",
        "basis_id": event.extra["basis_id"],
        "emergency": False,
    }
    assert b"".join(response.streaming_content) == PDF


def test_it_serves_nothing_when_the_audit_cannot_be_written(
    doctor, signed_in, mine, monkeypatch
) -> None:
    opened = []

    def failing_record(*args, **kwargs):
        raise AuditUnavailable("disk full")

    monkeypatch.setattr(door, "record", failing_record)

    def spy(document):
        opened.append(document)
        return iter(())

    monkeypatch.setattr(door, "stream_verified", spy)
    response = signed_in(doctor).get(content_url(mine))
    assert response.status_code == 503
    assert not response.streaming
    assert b"%PDF" not in response.content
    assert opened == []
    assert response["Retry-After"]


def test_it_refuses_a_tampered_document_clearly_and_alerts_it(doctor, signed_in, mine) -> None:
    path = vault.get_store().path_for(mine.pk)
    size = path.stat().st_size
    path.chmod(0o600)
    path.write_bytes(os.urandom(size))  # ransomware-style overwrite
    response = signed_in(doctor).get(content_url(mine), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 500
    assert not response.streaming
    assert b"%PDF" not in response.content
    body = response.content.decode()
    assert "This document cannot be decrypted" in body
    assert "IT has been alerted" in body
    alert = Alert.objects.get(kind="vault.integrity")
    assert alert.severity == "critical"
    assert alert.details["document_id"] == mine.pk
    assert AuditEvent.objects.filter(action="document.read.failed", outcome="failure").exists()


def test_it_aborts_the_stream_when_damage_shows_past_the_first_chunk(
    doctor, signed_in, mine
) -> None:
    path = vault.get_store().path_for(mine.pk)
    blob = bytearray(path.read_bytes())
    blob[-40] ^= 0xFF  # inside the last chunk: the first one still authenticates
    path.chmod(0o600)
    path.write_bytes(bytes(blob))
    response = signed_in(doctor).get(content_url(mine))
    assert response.status_code == 200
    with pytest.raises(vault.IntegrityError):
        b"".join(response.streaming_content)
    assert Alert.objects.filter(kind="vault.integrity", details__mid_stream=True).exists()


def test_it_shows_the_viewer_with_the_inline_frame(doctor, signed_in, mine) -> None:
    response = signed_in(doctor).get(reverse("portal:document_viewer", args=[mine.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'class="viewer-frame" src="{content_url(mine)}"' in body
    assert reverse("portal:document_download", args=[mine.pk]) in body
    assert mine.title in body
    assert "no-store" in response["Cache-Control"]


def test_it_never_renders_unsafe_types_inline(doctor, signed_in) -> None:
    patient = make_patient()
    relate(doctor, patient)
    html = make_document(patient, b"<script>alert(1)</script>", content_type="text/html")
    client = signed_in(doctor)
    response = client.get(content_url(html))
    assert response["Content-Disposition"].startswith("attachment")
    viewer = client.get(reverse("portal:document_viewer", args=[html.pk])).content.decode()
    assert "viewer-frame" not in viewer


def test_it_shows_the_emergency_banner_on_the_viewer(doctor, signed_in) -> None:
    patient = make_patient()
    grant(doctor, patient)
    document = make_document(patient)
    response = signed_in(doctor).get(reverse("portal:document_viewer", args=[document.pk]))
    assert 'class="emergency-banner"' in response.content.decode()
    response = signed_in(doctor).get(content_url(document))
    assert b"".join(response.streaming_content)
    assert AuditEvent.objects.get(action="document.read").extra["emergency"] is True


@pytest.mark.parametrize("bad_id", ["short", "x" * 65, "with.dot.inside.the.id.xx", "A" * 32])
def test_it_answers_404_for_malformed_or_unknown_ids(doctor, signed_in, bad_id) -> None:
    client = signed_in(doctor)
    for name in ("portal:document_viewer", "portal:document_content", "portal:document_download"):
        assert client.get(reverse(name, args=[bad_id])).status_code == 404
    assert client.get(reverse("portal:patient_detail", args=[bad_id])).status_code == 404
    assert AuditEvent.objects.filter(reason="unknown_or_malformed_id").count() == 4


def test_it_refuses_other_methods_on_the_door(doctor, signed_in, mine) -> None:
    assert signed_in(doctor).post(content_url(mine)).status_code == 405
