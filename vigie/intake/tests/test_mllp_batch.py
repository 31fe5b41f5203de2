"""The MLLP group commit (`batch.prepare_many` / `finish_many`): each message of a round gets
the answer `handle()` would give it alone, one failure fails no other, nothing half-stored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vigie import vault
from vigie.audit.models import AuditEvent
from vigie.intake.hl7.batch import finish_many, handle_many, prepare_many
from vigie.intake.hl7.handler import handle
from vigie.intake.hl7.testing import Oru, ack_fields, biomed
from vigie.intake.models import MllpSender, ReceivedMessage
from vigie.records.content import stream_verified
from vigie.records.models import Document, Patient, PatientIdentifier, PendingDocument
from vigie.records.results_store import open_results
from vigie.records.testing import make_patient
from vigie.vault.group import SealGroup


@pytest.fixture
def known(vault_home: Path) -> Patient:
    """A patient the lab BIOMED knows as L123456 (the default `Oru`'s)."""
    patient = make_patient("DURAND")
    PatientIdentifier.objects.create(patient=patient, source="BIOMED", value="L123456")
    return patient


def _stored() -> tuple[int, int, int]:
    return (
        Document.objects.count(),
        PendingDocument.objects.count(),
        ReceivedMessage.objects.count(),
    )


def _blobs() -> set[str]:
    return set(vault.get_store().iter_ids())


def _round(*orus: Oru, sender: MllpSender | None = None) -> list[tuple[bytes, MllpSender]]:
    who = sender or biomed()
    return [(oru.encode(), who) for oru in orus]


@pytest.mark.django_db
def test_a_round_answers_each_message_as_handle_would(known):
    already = handle(Oru(control_id="OLD").encode(), sender=biomed())
    assert already.code == "AA"
    replies = handle_many(
        _round(
            Oru(control_id="A"),
            Oru(control_id="UNKNOWN", ipp="L999999"),  # kept for reconciliation
            Oru(control_id="BADSEP", encoding_characters="^^\\&"),  # AR: unreadable envelope
            Oru(control_id="BADINS", ipp="", ins="285037500100133"),  # AE: wrong INS key
            Oru(control_id="OLD"),  # a resend of a message stored before the round
            Oru(control_id="B"),
            Oru(control_id="A"),  # the same message twice in the round: stored once
        )
    )
    answers = [(r.code, r.control_id, r.duplicate) for r in replies]
    assert answers == [
        ("AA", "A", False),
        ("AA", "UNKNOWN", False),
        ("AR", "BADSEP", False),
        ("AE", "BADINS", False),
        ("AA", "OLD", True),
        ("AA", "B", False),
        ("AA", "A", True),
    ]
    assert replies[6].document_id == replies[0].document_id
    assert replies[4].document_id == already.document_id
    for reply in replies:
        assert ack_fields(reply.ack)["control_id"] == reply.control_id
    # OLD before the round; A and B now; UNKNOWN waits for an administrator.
    assert _stored() == (3, 1, 4)
    assert PendingDocument.objects.get().pk == replies[1].pending_id
    for reply, control_id in ((replies[0], "A"), (replies[5], "B")):
        document = Document.objects.get(pk=reply.document_id)
        assert document.patient == known
        # As `handle()` stores it: the message exactly as received, its values beside it.
        assert b"".join(stream_verified(document)) == Oru(control_id=control_id).encode()
        results = open_results(document)
        assert results is not None
        assert [o.label for g in results.groups for o in g.observations]
    assert AuditEvent.objects.filter(action="intake.received").count() == 4
    assert AuditEvent.objects.filter(action="intake.duplicate").count() == 2
    assert AuditEvent.objects.filter(action="intake.rejected").count() == 2
    # Every blob belongs to a row: nothing of the refused ones was left behind.
    assert _blobs() == set(Document.objects.values_list("pk", flat=True)) | {replies[1].pending_id}


@pytest.mark.django_db
def test_a_message_taken_meanwhile_fails_alone_and_is_answered_as_a_duplicate(known):
    # The round is prepared (blobs sealed and durable), then another connection or process
    # stores B before the round commits: the round's transaction hits the unique control id.
    prepared = prepare_many(
        _round(Oru(control_id="A"), Oru(control_id="B"), Oru(control_id="C")), local_authority=""
    )
    first = handle(Oru(control_id="B").encode(), sender=biomed())
    replies = finish_many(prepared)
    assert [(r.code, r.control_id, r.duplicate) for r in replies] == [
        ("AA", "A", False),
        ("AA", "B", True),
        ("AA", "C", False),
    ]
    assert replies[1].document_id == first.document_id
    assert _stored() == (3, 0, 3)
    # B's second blob was removed with its rolled-back row: no orphan.
    assert _blobs() == set(Document.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_blob_that_cannot_be_written_fails_its_message_only(known, monkeypatch):
    real = SealGroup.seal

    def seal(self, document_id, data, max_size):
        if self._written:  # the second blob of the round
            raise OSError(28, "No space left on device")
        return real(self, document_id, data, max_size)

    monkeypatch.setattr(SealGroup, "seal", seal)
    replies = handle_many(_round(Oru(control_id="A"), Oru(control_id="B")))
    fields = [ack_fields(r.ack) for r in replies]
    assert [(f["code"], f["error_code"]) for f in fields] == [("AA", ""), ("AE", "207")]
    assert "send it again later" in fields[1]["text"]
    assert _stored() == (1, 0, 1)
    monkeypatch.undo()
    # The retry is stored, not taken for a duplicate.
    assert handle(Oru(control_id="B").encode(), sender=biomed()).code == "AA"


@pytest.mark.django_db
def test_a_failed_fsync_stores_nothing_of_the_round_and_asks_for_a_resend(known, monkeypatch):
    def broken(self, executor=None):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(SealGroup, "sync", broken)
    replies = handle_many(_round(Oru(control_id="A"), Oru(control_id="B")))
    assert [(r.code, ack_fields(r.ack)["error_code"]) for r in replies] == [
        ("AE", "207"),
        ("AE", "207"),
    ]
    assert _stored() == (0, 0, 0)
    assert _blobs() == set()


@pytest.mark.django_db
def test_an_audit_failure_at_commit_stores_nothing(known, monkeypatch):
    from vigie.audit import log

    def unavailable(events):
        raise log.AuditUnavailable("audit log unavailable: disk full")

    monkeypatch.setattr(log, "append_batch", unavailable)
    replies = handle_many(_round(Oru(control_id="A"), Oru(control_id="B")))
    assert {r.code for r in replies} == {"AE"}
    assert _stored() == (0, 0, 0)
    assert _blobs() == set()


@pytest.mark.django_db
def test_a_foreign_ipp_is_refused_without_failing_the_round(known):
    other = MllpSender.objects.create(name="OTHER", source_system="AUTRELAB")
    replies = handle_many([*_round(Oru(control_id="A")), (Oru(control_id="X").encode(), other)])
    assert replies[0].code == "AA"
    # Its IPP names BIOMED's system, which OTHER does not speak for: AR, nothing kept.
    assert replies[1].code == "AR"
    assert _stored() == (1, 0, 1)


@pytest.mark.django_db
def test_a_round_writes_each_table_in_one_insert(known):
    # The round's rows go in one multi-row INSERT per table (`rawsql.insert_many`), not one
    # statement per message: the CPU of a round should not grow by a statement per row.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from vigie.records.models import SealedResults

    orus = [Oru(control_id=f"M{n}") for n in range(5)] + [Oru(control_id="P", ipp="L999999")]
    prepared = prepare_many(_round(*orus), local_authority="")
    with CaptureQueriesContext(connection) as queries:
        replies = finish_many(prepared)
    assert [r.code for r in replies] == ["AA"] * 6
    assert _stored() == (5, 1, 6)
    assert SealedResults.objects.count() == 6
    inserts: dict[str, int] = {}
    for query in queries:
        # PostgreSQL appends the audit events inside a WITH (with the head's move).
        for table in re.findall(r'INSERT INTO "?(\w+)"?', query["sql"]):
            inserts[table] = inserts.get(table, 0) + 1
    for model in (Document, PendingDocument, SealedResults, ReceivedMessage, AuditEvent):
        assert inserts.get(model._meta.db_table) == 1, (model, inserts)


@pytest.mark.django_db
def test_a_round_looks_its_patients_up_in_one_query(vault_home):
    # Each message names its patient by the clinic's IPP: one query for the round's
    # patients, not one per message, and each message still filed under its own patient.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    patients = [make_patient(name) for name in ("MARTIN", "BERNARD", "PETIT")]
    orus = [
        Oru(control_id=f"P{n}", ipp=p.ipp, ipp_authority="CLINIQUE") for n, p in enumerate(patients)
    ]
    orus.append(Oru(control_id="NOBODY", ipp="UNKNOWN-1", ipp_authority="CLINIQUE"))
    with CaptureQueriesContext(connection) as queries:
        prepared = prepare_many(_round(*orus), local_authority="CLINIQUE")
    patient_table = Patient._meta.db_table
    lookups = [q for q in queries if q["sql"].startswith("SELECT") and patient_table in q["sql"]]
    assert len(lookups) == 1, [q["sql"] for q in lookups]
    replies = finish_many(prepared)
    assert [r.code for r in replies] == ["AA"] * 4
    for reply, patient in zip(replies, patients, strict=False):
        assert Document.objects.get(pk=reply.document_id).patient == patient
    assert PendingDocument.objects.get().pk == replies[3].pending_id
