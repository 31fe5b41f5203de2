"""`batch.commit_rounds`: rounds prepared apart (one per REST request) committed together.

Each round keeps its own outcome; together they are one transaction; and when that
transaction fails, each unit of each round is committed alone, so only the one at fault
fails.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError

from vigie import vault
from vigie.audit.models import AuditEvent
from vigie.intake.rest.testing import pdf
from vigie.records.batch import Arrival, commit_rounds, prepare_round
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import InvalidDocument
from vigie.records.models import Document, PendingDocument
from vigie.records.receive import Received, Sender
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    # Audit events on the calling thread, so they are visible inside the test's transaction.
    settings.VIGIE_AUDIT_GROUP_COMMIT = False


def arrival(ipp: str, title: str, **kwargs: Any) -> Arrival:
    meta = DocumentMeta(
        kind="lab_result", title=title, clinical_date=date(2026, 1, 1), source_system="LAB"
    )
    return Arrival(Sender(ipp=ipp), meta, pdf(), "rest", **kwargs)


def test_rounds_committed_together_each_get_their_own_document() -> None:
    patient = make_patient()
    prepared = [prepare_round([arrival(patient.ipp, t)]) for t in ("one", "two", "three")]
    outcomes = commit_rounds(prepared)
    assert [len(o) for o in outcomes] == [1, 1, 1]
    received = [o[0] for o in outcomes]
    assert all(isinstance(r, Received) and r.document is not None for r in received)
    stored = Document.objects.filter(patient=patient)
    assert sorted(d.title for d in stored) == ["one", "three", "two"]
    assert {r.id for r in received if isinstance(r, Received)} == {d.pk for d in stored}
    for document in stored:  # durable blob, readable
        assert b"".join(vault.open(document.pk, document.kek_id, bytes(document.wrapped_key)))
    assert AuditEvent.objects.filter(action="intake.document.stored").count() == 3


def test_a_round_at_fault_fails_alone_and_the_others_are_stored() -> None:
    patient = make_patient()

    def conflict(row: Document | PendingDocument) -> None:
        raise IntegrityError("this message was taken meanwhile")

    prepared = [
        prepare_round([arrival(patient.ipp, "first")]),
        prepare_round([arrival(patient.ipp, "conflicting", within=conflict)]),
        prepare_round([arrival("UNKNOWN-9", "to reconcile")]),
    ]
    outcomes = commit_rounds(prepared)
    assert isinstance(outcomes[0][0], Received)
    assert isinstance(outcomes[1][0], IntegrityError)
    assert isinstance(outcomes[2][0], Received)
    assert outcomes[2][0].pending is not None
    assert [d.title for d in Document.objects.all()] == ["first"]
    assert [p.title for p in PendingDocument.objects.all()] == ["to reconcile"]
    # The blob of the one that failed is gone: no orphan is left for fsck.
    store = vault.get_blob_store()
    rows = {*Document.objects.values_list("pk", flat=True)}
    rows |= {*PendingDocument.objects.values_list("pk", flat=True)}
    blobs = {p.name.split(".")[0] for p in Path(store.describe()).rglob("*") if p.is_file()}
    assert blobs == rows


def test_a_refused_upload_keeps_its_refusal_beside_committed_ones() -> None:
    patient = make_patient()
    refused = prepare_round([arrival(patient.ipp, "   ")])  # an empty title
    assert not refused.ready
    outcomes = commit_rounds([prepare_round([arrival(patient.ipp, "fine")]), refused])
    assert isinstance(outcomes[0][0], Received)
    assert isinstance(outcomes[1][0], InvalidDocument)
    assert [d.title for d in Document.objects.all()] == ["fine"]
