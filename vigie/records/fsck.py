"""`vigie vault fsck`: blobs and rows must agree.

Finds orphan blobs (no row), leftover temporary files (a crash mid-write), rows whose blob is
missing, and rows whose blob fails authentication or does not match the recorded hash.
`repair` removes orphans and temp files, and the broken rows — but first writes the removed
rows' metadata to a JSON report under VIGIE_HOME/fsck/, so that a restore can bring those
documents back and nothing disappears without a trace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vigie import vault
from vigie.lib import durable
from vigie.records.content import verify
from vigie.records.models import Document, PendingDocument, SealedResults, results_label
from vigie.vault.store import UnfinishedWrite

Progress = Callable[[int, int], None]

# A blob younger than this may belong to an ingest whose row is about to commit: fsck must
# not delete it from under a running intake.
ORPHAN_GRACE_SECONDS = 3600


@dataclass
class FsckReport:
    checked: int = 0
    orphan_blobs: list[str] = field(default_factory=list)
    young_orphans: list[str] = field(default_factory=list)
    # Temporary files of a crashed write, or multipart uploads never completed (S3).
    stale_temp_files: list[UnfinishedWrite] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    removed_report: Path | None = None

    @property
    def clean(self) -> bool:
        return not (self.orphan_blobs or self.stale_temp_files or self.missing or self.corrupt)


def fsck(
    *, repair: bool = False, progress: Progress | None = None, grace: float = ORPHAN_GRACE_SECONDS
) -> FsckReport:
    store = vault.get_blob_store()
    report = FsckReport()
    now = time.time()
    known: set[str] = set()
    total = Document.objects.count()
    for document in Document.objects.order_by("pk").iterator(chunk_size=200):
        known.add(document.pk)
        report.checked += 1
        if not store.exists(document.pk):
            report.missing.append(document.pk)
        else:
            try:
                verify(document)
            except vault.VaultError as exc:
                report.corrupt.append((document.pk, str(exc)))
        if progress is not None:
            progress(report.checked, total)
    # Documents still to be reconciled own their blobs too (attached to nobody yet).
    known.update(PendingDocument.objects.values_list("pk", flat=True))
    for blob_id in store.iter_ids():
        if blob_id in known:
            continue
        age = now - store.modified_at(blob_id)
        (report.orphan_blobs if age >= grace else report.young_orphans).append(blob_id)
    for temp in store.unfinished_writes():
        if now - temp.started_at >= grace:
            report.stale_temp_files.append(temp)
    if repair:
        _repair(report, store)
    return report


def _repair(report: FsckReport, store: vault.BlobStore) -> None:
    for blob_id in report.orphan_blobs:
        store.delete(blob_id)
    for temp in report.stale_temp_files:
        store.discard(temp)
    broken = report.missing + [pk for pk, _reason in report.corrupt]
    if not broken:
        return
    reasons = dict(report.corrupt)
    rows = list(Document.objects.filter(pk__in=broken).select_related("patient"))
    folder = Path(settings.VIGIE_HOME) / "fsck"
    durable.make_private_dir(folder)
    path = folder / f"removed-{timezone.now():%Y%m%dT%H%M%S}.json"
    payload = [
        {
            "document_id": doc.pk,
            "patient_ipp": doc.patient.ipp,
            "kind": doc.kind,
            "title": doc.title,
            "clinical_date": doc.clinical_date.isoformat(),
            "source_system": doc.source_system,
            "sha256": doc.sha256,
            "received_at": doc.received_at.isoformat(),
            "problem": reasons.get(doc.pk, "blob missing"),
        }
        for doc in rows
    ]
    # The report is written and fsynced before any row goes: it is the trace of what left.
    body = json.dumps(payload, ensure_ascii=False, indent=2).encode("utf-8")
    durable.write_new(path, [body], replace=True)
    with transaction.atomic():
        # A removed document's sealed results go with it: nothing would ever open them.
        SealedResults.objects.filter(pk__in=[results_label(doc.pk) for doc in rows]).delete()
        Document.objects.filter(pk__in=[doc.pk for doc in rows]).delete()
    for doc in rows:
        if store.exists(doc.pk):
            store.delete(doc.pk)
    report.removed_report = path
