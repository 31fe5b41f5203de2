"""`receive()`, `attach()`, `reject()`: exact matching or a human decides (issue 6).

A document attached to the wrong patient is a data breach, so most tests here check that
something did *not* happen: no Document row, no blob left behind, no guess.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone

from vigie import vault
from vigie.accounts.models import Role, User
from vigie.accounts.testing import log_in, make_user
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.records import keys
from vigie.records.fsck import fsck
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import ForeignSource, InvalidDocument
from vigie.records.models import (
    CareRelationship,
    Document,
    Patient,
    PatientIdentifier,
    PendingDocument,
    PendingStatus,
)
from vigie.records.receive import (
    Received,
    ReconcileError,
    Sender,
    attach,
    candidates,
    receive,
    reject,
)
from vigie.records.testing import VALID_PDF, make_patient, pdf_with_open_action_javascript

pytestmark = pytest.mark.django_db

META = DocumentMeta(
    kind="lab_result",
    title="Bilan lipidique",
    clinical_date=date(2026, 11, 2),
    source_system="LABO-BIO",
    author="Dr Biologiste",
)


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    # Audit events written on the calling thread, visible inside the test's transaction.
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


def _receive(sender: Sender, content: bytes = VALID_PDF, **kwargs: Any) -> Received:
    return receive(sender, META, content, channel="rest", **kwargs)


def _blobs() -> list[str]:
    return list(vault.get_store().iter_ids())


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def _pending(sender: Sender | None = None, content: bytes = VALID_PDF) -> PendingDocument:
    received = _receive(sender or Sender(ins=None, ipp="NOBODY-42"), content)
    assert received.pending is not None
    return received.pending


def _admin() -> User:
    return make_user("it.admin", role=Role.ADMIN)


# --- exact matching --------------------------------------------------------------------------


def test_it_attaches_on_an_ins_match() -> None:
    patient = make_patient()
    make_patient()  # a neighbour who must not receive it

    received = _receive(Sender(ins=patient.ins))

    assert received.pending is None
    assert received.document is not None
    assert received.document.patient == patient
    assert received.id == received.document.pk
    assert _blobs() == [received.document.pk]


def test_it_attaches_on_an_ipp_with_its_assigning_system() -> None:
    patient = make_patient()
    PatientIdentifier.objects.create(patient=patient, source="LABO-BIO", value="L-0042")

    received = _receive(Sender(ipp="L-0042", ipp_source="LABO-BIO"))

    assert received.document is not None
    assert received.document.patient == patient


def test_an_ipp_from_another_system_matches_nobody() -> None:
    # The same number means another person in another laboratory's system.
    patient = make_patient()
    PatientIdentifier.objects.create(patient=patient, source="LABO-BIO", value="L-0042")

    radio = replace(META, source_system="RADIO-SUD")
    received = receive(
        Sender(ipp="L-0042", ipp_source="RADIO-SUD"), radio, VALID_PDF, channel="rest"
    )

    assert received.document is None
    assert received.pending is not None
    assert received.pending.reason == "no patient has this IPP from RADIO-SUD"


def test_it_attaches_on_the_clinic_ipp() -> None:
    patient = make_patient()
    received = _receive(Sender(ipp=patient.ipp))
    assert received.document is not None
    assert received.document.patient == patient


def test_an_ins_and_an_ipp_of_two_patients_leave_it_pending() -> None:
    first, second = make_patient(), make_patient()
    PatientIdentifier.objects.create(patient=second, source="LABO-BIO", value="L-7")

    for sender in (
        Sender(ins=first.ins, ipp=second.ipp),
        Sender(ins=first.ins, ipp="L-7", ipp_source="LABO-BIO"),
    ):
        received = _receive(sender)
        assert received.pending is not None
        assert received.pending.reason == "the INS and the IPP designate two different patients"

    assert not Document.objects.exists()


def test_an_ins_with_a_clinic_ipp_that_is_not_its_patients_is_pending() -> None:
    # The IPP belongs to nobody yet, but the INS's patient has another one: a mix-up.
    patient = make_patient()
    received = _receive(Sender(ins=patient.ins, ipp="IPP-NOT-HERS"))
    assert received.pending is not None
    assert "IPP here is not the one sent" in received.pending.reason
    assert not Document.objects.exists()


def test_document_is_never_attached_on_a_name_match() -> None:
    only = make_patient("DURAND")  # the only DURAND Camille born 1985-03-14
    sender = Sender(family_name="DURAND", given_names="Camille", birth_date=date(1985, 3, 14))

    received = _receive(sender)

    assert received.document is None
    assert received.pending is not None
    assert not Document.objects.exists()
    assert "names and birth date are never enough" in received.pending.reason
    # Only a suggestion for the administrator.
    assert candidates(received.pending) == [only]
    assert received.pending.demographics == {
        "family_name": "DURAND",
        "given_names": "Camille",
        "birth_date": "1985-03-14",
    }


def test_an_unknown_ins_leaves_it_pending_with_what_was_sent() -> None:
    make_patient()
    unknown = make_patient()
    ins = unknown.ins
    assert ins is not None
    Patient.objects.filter(pk=unknown.pk).delete()

    received = _receive(Sender(ins=ins, ipp="L-1", ipp_source="LABO-BIO"))

    assert received.pending is not None
    assert received.pending.reason == "no patient has this INS here"
    assert received.pending.identifiers == {"ins": ins, "ipp": "L-1", "ipp_source": "LABO-BIO"}
    assert received.pending.status == PendingStatus.PENDING
    assert _blobs() == [received.pending.pk]


def test_an_ins_with_a_wrong_key_is_refused_and_nothing_is_stored() -> None:
    patient = make_patient()
    assert patient.ins is not None
    typo = patient.ins[:13] + f"{(int(patient.ins[13:]) + 1) % 100:02d}"

    with pytest.raises(InvalidDocument, match="invalid INS"):
        _receive(Sender(ins=typo))

    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()
    assert _blobs() == []


def test_a_sender_with_no_identification_at_all_is_refused() -> None:
    with pytest.raises(InvalidDocument, match="no patient identification"):
        _receive(Sender())
    assert _blobs() == []


def test_it_learns_the_senders_ipp_on_an_ins_match() -> None:
    patient = make_patient()

    _receive(Sender(ins=patient.ins, ipp="L-555", ipp_source="LABO-BIO"))
    learnt = PatientIdentifier.objects.get(source="LABO-BIO", value="L-555")
    assert learnt.patient == patient

    # Next time the laboratory's IPP alone is enough.
    received = _receive(Sender(ipp="L-555", ipp_source="LABO-BIO"))
    assert received.document is not None
    assert received.document.patient == patient


def test_bad_content_is_refused_before_any_storage() -> None:
    patient = make_patient()
    with pytest.raises(InvalidDocument, match="truncated"):
        _receive(Sender(ins=patient.ins), VALID_PDF[: len(VALID_PDF) // 2])
    with pytest.raises(InvalidDocument, match="truncated"):
        _receive(Sender(ipp="NOBODY-1"), VALID_PDF[: len(VALID_PDF) // 2])
    assert _blobs() == []
    assert not PendingDocument.objects.exists()


def test_active_content_is_flagged_on_the_pending_document() -> None:
    pending = _pending(content=pdf_with_open_action_javascript())
    assert pending.active_content
    assert "javascript" in pending.content_warnings


# --- all or nothing --------------------------------------------------------------------------


def _already_taken(row: object) -> None:
    raise IntegrityError("UNIQUE constraint failed: intake_message.control_id")


@pytest.mark.parametrize(
    "matched", [True, False], ids=["matched_patient", "pending_reconciliation"]
)
def test_a_failing_within_undoes_the_whole_reception(matched: bool) -> None:
    patient = make_patient()
    sender = Sender(ins=patient.ins) if matched else Sender(ipp="NOBODY-9")
    before = _actions()

    with pytest.raises(IntegrityError):
        _receive(sender, within=_already_taken)

    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()
    assert _blobs() == [], "the sealed blob must be removed with the row"
    assert _actions() == before, "no audit event for a reception that did not happen"


def test_a_pending_document_is_never_kept_unaudited(monkeypatch: pytest.MonkeyPatch) -> None:
    def audit_down(*args: Any, **kwargs: Any) -> None:
        raise AuditUnavailable("database is locked")

    monkeypatch.setattr("vigie.records.receive.record", audit_down)

    with pytest.raises(AuditUnavailable):
        _receive(Sender(ipp="NOBODY-9"))

    # The sender gets an error and will retry: nothing may stay behind.
    assert not PendingDocument.objects.exists()
    assert _blobs() == []


# --- pending documents are vault citizens ----------------------------------------------------


def _age(blob_id: str, seconds: float) -> None:
    path = vault.get_store().path_for(blob_id)
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_pending_documents_survive_fsck_repair() -> None:
    pending = _pending()
    orphan = "orphan-blob-0123456789"
    vault.seal(orphan, io.BytesIO(b"%PDF lost"), store=vault.get_store())
    # Both older than the grace period: only a row keeps a blob from being an orphan.
    _age(pending.pk, 7200)
    _age(orphan, 7200)

    call_command("vault", "fsck", "--repair", stdout=io.StringIO())

    assert _blobs() == [pending.pk]
    assert fsck(grace=0).clean
    with vault.open(pending.pk, pending.kek_id, bytes(pending.wrapped_key)) as plaintext:
        assert b"".join(plaintext) == VALID_PDF


def test_key_rotation_rewraps_pending_documents_and_guards_their_old_key() -> None:
    pending = _pending()
    old_kek = pending.kek_id
    vault.get_keyring().add_key()

    with pytest.raises(keys.KeyInUse, match="still wraps 1"):
        keys.remove_key(old_kek)

    assert keys.rewrap_all() == 1
    keys.remove_key(old_kek)
    pending.refresh_from_db()
    assert pending.kek_id != old_kek
    with vault.open(pending.pk, pending.kek_id, bytes(pending.wrapped_key)) as plaintext:
        assert b"".join(plaintext) == VALID_PDF


# --- reconciliation --------------------------------------------------------------------------


def _doctor_of(patient: Patient) -> Client:
    doctor = make_user("dr.house", role=Role.DOCTOR)
    CareRelationship.objects.create(
        doctor=doctor,
        patient=patient,
        role="treating",
        valid_from=timezone.now() - timedelta(days=1),
    )
    client = Client()
    log_in(client, doctor)
    return client


def test_attach_creates_the_document_under_the_same_id_readable_by_its_doctor() -> None:
    patient = make_patient()
    pending = _pending(Sender(ins=None, ipp="L-31", ipp_source="LABO-BIO"))
    admin = _admin()

    document = attach(pending, patient, by=admin, note="phoned the lab: same person")

    assert document.pk == pending.pk
    assert document.patient == patient
    assert (document.sha256, document.size) == (pending.sha256, pending.size)
    pending.refresh_from_db()
    assert pending.status == PendingStatus.ATTACHED
    assert pending.document == document
    assert pending.resolved_by == "it.admin"
    assert pending.resolution_note == "phoned the lab: same person"
    # The laboratory's IPP is remembered for next time.
    assert PatientIdentifier.objects.get(source="LABO-BIO", value="L-31").patient == patient

    response = _doctor_of(patient).get(f"/documents/{document.pk}/content")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == VALID_PDF  # type: ignore[attr-defined]


def test_a_flagged_pending_document_stays_download_only_once_attached() -> None:
    patient = make_patient()
    pending = _pending(content=pdf_with_open_action_javascript())

    document = attach(pending, patient, by=_admin())

    assert document.active_content
    response = _doctor_of(patient).get(f"/documents/{document.pk}/content")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")


def test_no_doctor_sees_a_pending_document() -> None:
    patient = make_patient()
    pending = _pending()
    client = _doctor_of(patient)
    assert client.get(f"/documents/{pending.pk}/content").status_code == 404
    assert client.get(f"/documents/{pending.pk}/").status_code == 404


def test_reject_keeps_the_blob_and_records_the_reason() -> None:
    pending = _pending()

    reject(pending, by=_admin(), note="not a patient of this clinic")

    pending.refresh_from_db()
    assert pending.status == PendingStatus.REJECTED
    assert pending.resolution_note == "not a patient of this clinic"
    assert pending.resolved_by == "it.admin"
    assert pending.resolved_at is not None
    assert _blobs() == [pending.pk]
    assert not Document.objects.exists()


def test_reject_needs_a_reason() -> None:
    pending = _pending()
    with pytest.raises(ReconcileError):
        reject(pending, by=_admin(), note="   ")
    pending.refresh_from_db()
    assert pending.status == PendingStatus.PENDING


def test_a_document_is_reconciled_once() -> None:
    patient, other = make_patient(), make_patient()
    admin = _admin()
    attached, rejected = _pending(), _pending()
    attach(attached, patient, by=admin)
    reject(rejected, by=admin, note="duplicate of an earlier result")

    with pytest.raises(ReconcileError, match="already reconciled"):
        attach(attached, other, by=admin)
    with pytest.raises(ReconcileError, match="already reconciled"):
        reject(attached, by=admin, note="oops")
    with pytest.raises(ReconcileError, match="already reconciled"):
        attach(rejected, patient, by=admin)
    with pytest.raises(ReconcileError, match="already reconciled"):
        reject(rejected, by=admin, note="again")

    assert list(Document.objects.values_list("pk", "patient")) == [(attached.pk, patient.pk)]


def test_every_step_is_audited() -> None:
    patient = make_patient()
    admin = _admin()
    stale = _pending(Sender(ins=None, ipp="NOBODY-1"))
    junk = _pending(Sender(ins=None, ipp="NOBODY-2"))

    attach(stale, patient, by=admin, note="checked with the lab")
    reject(junk, by=admin, note="test message from the lab")

    received = AuditEvent.objects.filter(action="intake.pending").order_by("seq")
    assert [e.extra["pending_id"] for e in received] == [stale.pk, junk.pk]
    assert received[0].extra["channel"] == "rest"
    assert received[0].extra["identifiers"] == {"ipp": "NOBODY-1"}
    assert received[0].reason == "no patient has this IPP of this clinic"

    attached = AuditEvent.objects.get(action="intake.reconcile.attach")
    assert attached.actor_username == "it.admin"
    assert attached.document_id == stale.pk
    assert attached.patient_ipp == patient.ipp
    assert attached.extra["note"] == "checked with the lab"
    # The document enters the patient's record like any other ingest.
    assert AuditEvent.objects.get(action="intake.document.stored").document_id == stale.pk

    rejected = AuditEvent.objects.get(action="intake.reconcile.reject")
    assert rejected.actor_username == "it.admin"
    assert rejected.reason == "test message from the lab"
    assert rejected.extra["pending_id"] == junk.pk


@pytest.mark.parametrize(
    ("sender", "meta"),
    [
        (Sender(ins=None, ipp="A\x00B"), META),
        (Sender(ins=None, ipp="IPP1", family_name="DUPONT\x01"), META),
        (Sender(ins=None, ipp="IPP1"), replace(META, title="Bilan\x00")),
        (Sender(ins=None, ipp="IPP1"), replace(META, author="Dr\x1bX")),
    ],
)
def test_control_characters_in_identities_or_titles_are_refused_and_nothing_stored(
    sender: Sender, meta: DocumentMeta
) -> None:
    with pytest.raises(InvalidDocument, match="control character"):
        receive(sender, meta, VALID_PDF, channel="rest")
    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()


def test_attack_a_sender_naming_another_systems_ipp_is_refused_and_nothing_is_learnt() -> None:
    # LABO-BIO's credentials claiming "RADIO-SUD's patient L-0042" with the victim's exact
    # INS: before, stored for the victim and (RADIO-SUD, L-0042) → victim learnt.
    victim = make_patient()
    with pytest.raises(ForeignSource, match="speaks for 'LABO-BIO' only"):
        _receive(Sender(ins=victim.ins, ipp="L-0042", ipp_source="RADIO-SUD"))
    assert not PatientIdentifier.objects.exists()
    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()
    assert _blobs() == []
