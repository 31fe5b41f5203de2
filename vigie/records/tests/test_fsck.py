from __future__ import annotations

import json
from pathlib import Path

import pytest

from vigie import vault
from vigie.records.fsck import fsck
from vigie.records.models import Document, SealedResults, results_label
from vigie.records.testing import make_document, make_lab_document, make_patient, sample_results

pytestmark = pytest.mark.django_db


def test_it_finds_nothing_wrong_in_a_healthy_vault(vault_home: Path) -> None:
    patient = make_patient()
    for _ in range(3):
        make_document(patient)
    report = fsck(grace=0)
    assert report.clean
    assert report.checked == 3


def test_it_reports_and_repairs_an_orphan_blob(vault_home: Path) -> None:
    document = make_document(make_patient())
    store = vault.get_store()
    # An orphan: a blob sealed by an ingest that died before its row committed.
    import io

    vault.seal("orphan-blob-0123456789", io.BytesIO(b"lost"), store=store)
    report = fsck(grace=0)
    assert report.orphan_blobs == ["orphan-blob-0123456789"]
    fsck(repair=True, grace=0)
    assert not store.exists("orphan-blob-0123456789")
    assert store.exists(document.pk)
    assert fsck(grace=0).clean


def test_it_leaves_recent_orphans_alone(vault_home: Path) -> None:
    import io

    vault.seal("inflight-0123456789ab", io.BytesIO(b"x"), store=vault.get_store())
    report = fsck(repair=True)  # default grace: an ingest may be about to commit
    assert report.young_orphans == ["inflight-0123456789ab"]
    assert vault.get_store().exists("inflight-0123456789ab")


def test_it_reports_a_row_whose_blob_is_missing_and_records_it_before_repair(
    vault_home: Path,
) -> None:
    keep = make_document(make_patient())
    gone = make_document(make_patient(), title="Compte rendu perdu")
    vault.get_store().delete(gone.pk)
    report = fsck(grace=0)
    assert report.missing == [gone.pk]
    repaired = fsck(repair=True, grace=0)
    assert repaired.removed_report is not None
    removed = json.loads(repaired.removed_report.read_text())
    assert [row["document_id"] for row in removed] == [gone.pk]
    assert removed[0]["title"] == "Compte rendu perdu"
    assert list(Document.objects.values_list("pk", flat=True)) == [keep.pk]


def test_it_reports_a_tampered_blob_as_corrupt(vault_home: Path) -> None:
    document = make_document(make_patient(), b"%PDF" + b"x" * 5000)
    path = vault.get_store().path_for(document.pk)
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(bytes(data))
    report = fsck(grace=0)
    assert [pk for pk, _ in report.corrupt] == [document.pk]
    assert not report.clean


def test_a_removed_lab_document_takes_its_sealed_results_with_it(vault_home: Path) -> None:
    keep = make_lab_document(make_patient(), sample_results())
    gone = make_lab_document(make_patient(), sample_results("3.0", flag=""))
    vault.get_store().delete(gone.pk)
    fsck(repair=True, grace=0)
    assert set(SealedResults.objects.values_list("pk", flat=True)) == {results_label(keep.pk)}
