from __future__ import annotations

import hashlib
import io
from datetime import date
from pathlib import Path
from unittest import mock

import pytest

from vigie import vault
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.records.content import stream_verified
from vigie.records.ingest import (
    DocumentMeta,
    InvalidDocument,
    PatientRef,
    UnknownPatient,
    find_patient,
    ingest,
)
from vigie.records.models import Document
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

SECRET = b"%PDF-1.7\nPatient: MARTINEAU Solange, hemoglobine 9.1 g/dL\n%%EOF\n"


def _blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "blobs").rglob("*") if p.is_file()]


def test_it_stores_the_document_encrypted_and_reads_it_back(vault_home: Path) -> None:
    patient = make_patient("MARTINEAU")
    document = make_document(patient, SECRET)
    assert document.size == len(SECRET)
    assert document.sha256 == hashlib.sha256(SECRET).hexdigest()
    assert Document.objects.get(pk=document.pk).patient == patient
    assert b"".join(stream_verified(document)) == SECRET
    files = _blob_files(vault_home)
    assert len(files) == 1
    on_disk = files[0].read_bytes()
    assert b"MARTINEAU" not in on_disk
    assert b"%PDF" not in on_disk


def test_it_gives_documents_long_random_ids(vault_home: Path) -> None:
    patient = make_patient()
    ids = [make_document(patient).pk for _ in range(5)]
    assert len(set(ids)) == 5
    for document_id in ids:
        # 32 URL-safe characters = 192 bits; an enumerable id would be short or numeric.
        assert len(document_id) >= 22
        assert not document_id.isdigit()


def test_it_matches_a_patient_exactly_by_ins_or_ipp(vault_home: Path) -> None:
    patient = make_patient()
    assert find_patient(PatientRef(ins=patient.ins)) == patient
    assert find_patient(PatientRef(ipp=patient.ipp)) == patient
    assert find_patient(PatientRef(ins=patient.ins, ipp=patient.ipp)) == patient


def test_it_refuses_an_ins_and_ipp_that_designate_two_patients(vault_home: Path) -> None:
    first, second = make_patient(), make_patient()
    with pytest.raises(UnknownPatient, match="two different patients"):
        find_patient(PatientRef(ins=first.ins, ipp=second.ipp))


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (PatientRef(), "no patient identifier"),
        (PatientRef(ipp="IPP9999999"), "no patient"),
        (PatientRef(ins="184127645108947"), "control key"),
    ],
)
def test_it_refuses_an_unknown_or_malformed_patient(
    vault_home: Path, ref: PatientRef, message: str
) -> None:
    with pytest.raises(UnknownPatient, match=message):
        ingest(ref, _meta(), io.BytesIO(SECRET))
    assert not Document.objects.exists()
    assert _blob_files(vault_home) == []


def _meta(**overrides: object) -> DocumentMeta:
    fields: dict[str, object] = {
        "kind": "lab_result",
        "title": "NFS",
        "clinical_date": date(2026, 1, 5),
        "source_system": "LABO",
    }
    fields.update(overrides)
    return DocumentMeta(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "selfie"}, "unknown document kind"),
        ({"title": "   "}, "title is empty"),
        ({"title": "x" * 256}, "longer than 255"),
        ({"source_system": ""}, "source system"),
        ({"content_type": "pdf"}, "content type"),
    ],
)
def test_it_refuses_bad_metadata_before_storing_anything(
    vault_home: Path, overrides: dict[str, object], message: str
) -> None:
    patient = make_patient()
    with pytest.raises(InvalidDocument, match=message):
        ingest(patient, _meta(**overrides), io.BytesIO(SECRET))
    assert _blob_files(vault_home) == []


def test_it_refuses_a_document_above_the_size_limit(vault_home: Path, settings) -> None:
    settings.VIGIE_MAX_DOCUMENT_SIZE = 1000
    patient = make_patient()
    with pytest.raises(InvalidDocument):
        ingest(patient, _meta(), io.BytesIO(b"x" * 1001))
    assert not Document.objects.exists()
    assert _blob_files(vault_home) == []


def test_it_leaves_no_blob_when_the_row_cannot_be_written(vault_home: Path) -> None:
    patient = make_patient()
    with (
        mock.patch("vigie.records.ingest.record", side_effect=AuditUnavailable("down")),
        pytest.raises(AuditUnavailable),
    ):
        ingest(patient, _meta(), io.BytesIO(SECRET))
    assert not Document.objects.exists()
    assert _blob_files(vault_home) == []


def test_it_writes_the_stored_event_with_the_row(vault_home: Path) -> None:
    document = make_document(make_patient(), title="Scanner thoracique")
    event = AuditEvent.objects.get(action="intake.document.stored")
    assert event.document_id == document.pk
    assert event.patient_id == document.patient.pk
    assert event.extra["source_system"] == document.source_system


def test_a_row_that_does_not_commit_leaves_no_stored_event(vault_home: Path) -> None:
    def refuse(document: Document) -> None:
        raise RuntimeError("the channel could not note the message")

    with pytest.raises(RuntimeError):
        ingest(make_patient(), _meta(), io.BytesIO(SECRET), within=refuse)
    assert not Document.objects.exists()
    assert not AuditEvent.objects.filter(action="intake.document.stored").exists()


def test_it_detects_a_row_whose_recorded_hash_was_edited(vault_home: Path) -> None:
    document = make_document(make_patient(), SECRET)
    Document.objects.filter(pk=document.pk).update(sha256="0" * 64)
    document.refresh_from_db()
    with pytest.raises(vault.VaultError, match="does not match"):
        b"".join(stream_verified(document))


def test_the_door_read_skips_the_hash_but_not_the_size(vault_home: Path) -> None:
    document = make_document(make_patient(), SECRET)
    Document.objects.filter(pk=document.pk).update(sha256="0" * 64)
    document.refresh_from_db()
    # AES-GCM has authenticated every chunk: the bytes are the ones sealed for this id.
    assert b"".join(stream_verified(document, digest=False)) == SECRET
    Document.objects.filter(pk=document.pk).update(size=len(SECRET) + 1)
    document.refresh_from_db()
    with pytest.raises(vault.VaultError, match="does not match"):
        b"".join(stream_verified(document, digest=False))
