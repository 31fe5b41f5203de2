"""`receive()`: what every intake channel (REST, FHIR, HL7 v2, hot folder) calls.

    bytes ─► inspect (refuse what is not what it claims) ─► match the patient exactly
          ├─ matched ─► ingest(): a Document of that patient
          └─ not matched exactly ─► a PendingDocument: encrypted, attached to nobody, for
             an administrator to reconcile

Who sends is not what the payload says: `meta.source_system` is the configured
sender's one source system (its API key, MLLP client certificate or hot folder), and an IPP
is matched and learnt only in that system, or as this clinic's own IPP. A payload whose IPP
names another system is refused before anything is read into the store (`ForeignSource`):
otherwise Lab A could teach Vigie that "LABO-B's patient 424242" is someone, and Lab B's
later results for its own 424242 would be filed under that someone.

Matching is exact or not at all: on the INS, or on an IPP *with the system that
assigned it* (this clinic's own IPP is `Patient.ipp`; other systems' are
`PatientIdentifier` rows). Names and birth date never attach a document: they only help
the administrator who reconciles. A document attached to the wrong patient is a data
breach; a document waiting an hour for a human is not.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from vigie.audit.log import record
from vigie.lib import rawsql
from vigie.records.identifiers import InvalidIdentifier, validate_ipp, validate_nir
from vigie.records.ingest import (
    DocumentMeta,
    _validate_meta,
    ingest,
    meta_fields,
    record_stored,
    refuse_control_characters,
    seal_and_insert,
)
from vigie.records.ingest_errors import ForeignSource, InvalidDocument
from vigie.records.inspection import LAB_MESSAGE_TYPES, ContentReport, inspect
from vigie.records.models import (
    Document,
    Patient,
    PatientIdentifier,
    PendingDocument,
    PendingStatus,
)
from vigie.records.results import ResultSet

logger = logging.getLogger(__name__)

CHANNELS = ("rest", "fhir", "hl7", "folder", "other")


@dataclass(frozen=True)
class Sender:
    """What the sending system says about the patient."""

    ins: str | None = None
    ipp: str | None = None
    # Who assigned `ipp`; empty means this clinic's own IPP (Patient.ipp).
    ipp_source: str = ""
    family_name: str = ""
    given_names: str = ""
    birth_date: date | None = None
    sex: str = ""

    def identifiers(self) -> dict[str, str]:
        found = {"ins": self.ins or "", "ipp": self.ipp or "", "ipp_source": self.ipp_source}
        return {k: v for k, v in found.items() if v}

    def demographics(self) -> dict[str, str]:
        found = {
            "family_name": self.family_name,
            "given_names": self.given_names,
            "birth_date": self.birth_date.isoformat() if self.birth_date else "",
            "sex": self.sex,
        }
        return {k: v for k, v in found.items() if v}


@dataclass
class Match:
    patient: Patient | None
    reason: str = ""
    # (source, ipp) to remember for this patient once matched on the INS.
    learn: tuple[str, str] | None = None


@dataclass(frozen=True)
class Received:
    """The outcome: a stored Document, or a PendingDocument waiting for reconciliation."""

    document: Document | None = None
    pending: PendingDocument | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        target = self.document or self.pending
        if target is None:
            raise ValueError("an empty Received")
        return str(target.pk)


def in_own_source(sender: Sender, source_system: str) -> Sender:
    """`sender` with its IPP placed in `source_system`, the configured sender's own; a
    ForeignSource error when the payload names any other assigning system.

    Compared without regard to case (HL7 namespace ids are often written both ways), and
    then written as configured, so what is learnt always lands in the sender's namespace.
    """
    own = source_system.strip()
    claimed = sender.ipp_source.strip()
    if not claimed:
        return sender
    if claimed.casefold() != own.casefold():
        raise ForeignSource(
            f"the IPP is assigned by {claimed[:100]!r}, but this sender speaks for {own!r} "
            "only: send your own patient number (or the INS); nothing was stored"
        )
    return replace(sender, ipp_source=own)


# The patients of a round of documents by INS (the hot folder's HPRIM rounds) and by clinic
# IPP (an MLLP round): looked up all at once, and each at most once for the round, instead of
# once per document (and once more by the HPRIM NIR check). Per thread and per context (a
# ContextVar), so rounds never share them.
_by_ins: ContextVar[dict[str, Patient | None] | None] = ContextVar("vigie_by_ins", default=None)
_by_ipp: ContextVar[dict[str, Patient | None] | None] = ContextVar("vigie_by_ipp", default=None)


@contextmanager
def ins_lookups(prefetch: Iterable[str] = (), *, ipps: Iterable[str] = ()) -> Iterator[None]:
    """Within the block, `patient_by_ins` answers each INS from one look-up, and
    `patient_by_ipp` each clinic IPP: those in `prefetch` (INS) and `ipps` by one query
    each, others on first use. For a round whose rows are written within moments of its
    checks, as every document's own look-up already is; never across rounds. A nested
    block shares the outer one's answers."""
    if _by_ins.get() is not None:
        yield
        return
    by_ins = _prefetched("ins", prefetch)
    by_ipp = _prefetched("ipp", ipps)
    tokens = _by_ins.set(by_ins), _by_ipp.set(by_ipp)
    try:
        yield
    finally:
        _by_ins.reset(tokens[0])
        _by_ipp.reset(tokens[1])


def _prefetched(name: str, values: Iterable[str]) -> dict[str, Patient | None]:
    """{value: the patient holding it, or None}, in one raw query (not the ORM's: its
    query cost more CPU than the answer)."""
    wanted = sorted({value for value in values if value})
    memo: dict[str, Patient | None] = dict.fromkeys(wanted)
    if wanted:
        for patient in rawsql.many_by(Patient, name, wanted, connection):
            memo[getattr(patient, name)] = patient
    return memo


def _looked_up(memo: dict[str, Patient | None] | None, name: str, value: str) -> Patient | None:
    if memo is None:
        # Raw, by the unique column: on every received document, the ORM's query cost more
        # CPU than the database's answer.
        return rawsql.first_by(Patient, name, value, connection)
    if value not in memo:
        memo[value] = rawsql.first_by(Patient, name, value, connection)
    return memo[value]


def patient_by_ins(ins: str) -> Patient | None:
    """The patient holding this INS, or None (through the round's answers in `ins_lookups`)."""
    return _looked_up(_by_ins.get(), "ins", ins)


def patient_by_ipp(ipp: str) -> Patient | None:
    """The patient with this clinic IPP, or None (through the round's answers in
    `ins_lookups`)."""
    return _looked_up(_by_ipp.get(), "ipp", ipp)


def match_patient(sender: Sender) -> Match:
    """The patient these identifiers designate exactly, or why there is none."""
    for name in ("ins", "ipp", "ipp_source", "family_name", "given_names", "sex"):
        refuse_control_characters(getattr(sender, name) or "", f"the patient's {name}")
    try:
        ins = validate_nir(sender.ins) if sender.ins else None
    except InvalidIdentifier as exc:
        # A wrong INS key is a typing error at the source: refuse, the sender must fix it.
        raise InvalidDocument(f"invalid INS: {exc}") from None
    try:
        ipp = validate_ipp(sender.ipp) if sender.ipp else None
    except InvalidIdentifier as exc:
        raise InvalidDocument(f"invalid IPP: {exc}") from None
    if ins is None and ipp is None and not sender.demographics():
        raise InvalidDocument(
            "no patient identification: send the INS, or the IPP with its assigning system, "
            "or at least the patient's names and birth date"
        )
    by_ins = patient_by_ins(ins) if ins else None
    by_ipp: Patient | None = None
    if ipp:
        if sender.ipp_source:
            by_ipp = Patient.objects.filter(
                identifiers__source=sender.ipp_source, identifiers__value=ipp
            ).first()
        else:
            by_ipp = patient_by_ipp(ipp)
    if by_ins and by_ipp and by_ins.pk != by_ipp.pk:
        return Match(None, "the INS and the IPP designate two different patients")
    if by_ins is not None and ipp and not sender.ipp_source and by_ins.ipp != ipp:
        # Every patient has exactly one clinic IPP: an INS match whose patient carries
        # another one is a contradiction (a mix-up at the source), not a match to trust.
        return Match(None, "the INS designates a patient whose IPP here is not the one sent")
    if by_ins is not None:
        learn = (sender.ipp_source, ipp) if (ipp and sender.ipp_source and by_ipp is None) else None
        return Match(by_ins, learn=learn)
    if by_ipp is not None:
        return Match(by_ipp)
    if ins:
        return Match(None, "no patient has this INS here")
    if ipp:
        where = f"from {sender.ipp_source}" if sender.ipp_source else "of this clinic"
        return Match(None, f"no patient has this IPP {where}")
    return Match(None, "no identifier (INS or IPP): names and birth date are never enough")


def _read_bounded(content: BinaryIO) -> bytes:
    """The whole file, in memory only (never a plaintext temp file), within the size limit."""
    limit = settings.VIGIE_MAX_DOCUMENT_SIZE
    data = content.read(limit + 1)
    if len(data) > limit:
        raise InvalidDocument(f"the document is larger than the limit of {limit} bytes")
    return data


def receive(
    sender: Sender,
    meta: DocumentMeta,
    content: BinaryIO | bytes,
    *,
    channel: str,
    extra: dict[str, Any] | None = None,
    within: Callable[[Document | PendingDocument], None] | None = None,
    results: ResultSet | None = None,
    attachment: bytes | None = None,
    inspected: ContentReport | None = None,
) -> Received:
    """Check, match and store a received document; see the module docstring.

    `meta.source_system` must be the configured sender's, never a payload's: it is what
    doctors see as the origin, and the only system whose IPPs this sender may name.
    Raises InvalidDocument (the sender must fix something; ForeignSource when it names
    another sender's system), StorageUnavailable (retry later): in both cases nothing is
    stored. Returns once blob and row are durable.
    `within(row)` runs inside the row's transaction (see `ingest`); whatever it raises
    (an IntegrityError for a message already taken) undoes the whole reception.
    `results` (and `attachment`): the lab values the message carries, sealed beside it
    (see `ingest`), whether the document is matched or waits for reconciliation.
    `inspected` is for a channel that read the content with its own parser (HPRIM text, which
    `inspect()` does not know): what that parser found. Every other caller leaves it out, so
    that nothing but a checked PDF or image is stored from a generic upload.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    _validate_meta(meta)
    data = content if isinstance(content, bytes) else _read_bounded(content)
    if len(data) > settings.VIGIE_MAX_DOCUMENT_SIZE:
        raise InvalidDocument(
            f"the document is larger than the limit of {settings.VIGIE_MAX_DOCUMENT_SIZE} bytes"
        )
    sender = in_own_source(sender, meta.source_system)
    report = inspected if inspected is not None else inspect(data, meta.content_type)
    report = lab_report(report, results, attachment)
    match = match_patient(sender)
    audit_extra = {"channel": channel, "source_system": meta.source_system, **(extra or {})}
    if match.patient is None:
        pending = _store_pending(
            sender,
            meta,
            data,
            report,
            channel,
            match.reason,
            within,
            audit_extra,
            (results, attachment),
        )
        return Received(pending=pending, warnings=report.warnings)
    document = ingest(
        match.patient,
        _with_type(meta, report),
        io.BytesIO(data),
        active_content=report.active_content,
        content_warnings=report.warnings,
        within=within,
        results=results,
        attachment=attachment,
    )
    if match.learn is not None:
        source, value = match.learn
        try:
            with transaction.atomic():
                PatientIdentifier.objects.create(patient=match.patient, source=source, value=value)
        except IntegrityError:
            logger.info("identifier %s:%s learnt concurrently", source, value)
    return Received(document=document, warnings=report.warnings)


def lab_report(
    report: ContentReport, results: ResultSet | None, attachment: bytes | None
) -> ContentReport:
    """The checks a lab message gets beyond its own inspection (shared with the MLLP group
    commit, `records.batch`): refused without its values, and its embedded document
    inspected like any received file."""
    if report.content_type in LAB_MESSAGE_TYPES and results is None:
        # Kept as received only with its values beside it: a message nobody can read as a
        # table is a message a physician cannot read at all.
        raise InvalidDocument(
            "a lab message (HL7 v2, HPRIM) is received through its own channel, which keeps "
            "its results; send a PDF here"
        )
    if attachment is not None and results is not None and results.attachment is not None:
        # The sender's own document inside the message is checked like any received file:
        # refused if it is not what it claims, and its active content marks the document.
        embedded = inspect(attachment, results.attachment.content_type)
        report = replace(
            report,
            active_content=report.active_content or embedded.active_content,
            warnings=[*report.warnings, *embedded.warnings],
        )
    return report


def _with_type(meta: DocumentMeta, report: ContentReport) -> DocumentMeta:
    if meta.content_type == report.content_type:
        return meta
    return DocumentMeta(
        kind=meta.kind,
        title=meta.title,
        clinical_date=meta.clinical_date,
        source_system=meta.source_system,
        author=meta.author,
        content_type=report.content_type,
    )


def _store_pending(
    sender: Sender,
    meta: DocumentMeta,
    data: bytes,
    report: ContentReport,
    channel: str,
    reason: str,
    within: Callable[[Document | PendingDocument], None] | None,
    audit_extra: dict[str, Any],
    lab: tuple[ResultSet | None, bytes | None] = (None, None),
) -> PendingDocument:

    def then(pending: PendingDocument) -> None:
        # In the row's transaction, like `intake.document.stored` for a matched document:
        # a pending document is never stored unaudited, nor an event left for a
        # reception that rolled back.
        record(
            "intake.pending",
            reason=reason[:500],
            extra={**audit_extra, "pending_id": pending.pk, "identifiers": sender.identifiers()},
        )
        if within is not None:
            within(pending)

    return seal_and_insert(
        PendingDocument,
        io.BytesIO(data),
        max_size=len(data),
        fields={
            "channel": channel,
            "reason": reason[:500],
            "identifiers": sender.identifiers(),
            "demographics": sender.demographics(),
            **meta_fields(_with_type(meta, report)),
            "active_content": report.active_content,
            "content_warnings": report.warnings,
        },
        then=then,
        results=lab[0],
        attachment=lab[1],
    )


def candidates(pending: PendingDocument, limit: int = 10) -> list[Patient]:
    """Patients an administrator may want to look at: same family name and birth date.

    Only a suggestion for a human; nothing is ever attached from it automatically.
    """
    demographics = pending.demographics or {}
    family = (demographics.get("family_name") or "").strip()
    born = demographics.get("birth_date") or ""
    query = Patient.objects.all()
    if family:
        query = query.filter(family_name__iexact=family)
    if born:
        query = query.filter(birth_date=born)
    if not family and not born:
        return []
    return list(query.order_by("family_name", "given_names")[:limit])


class ReconcileError(ValueError):
    pass


def attach(pending: PendingDocument, patient: Patient, *, by: Any, note: str = "") -> Document:
    """An administrator's decision: this pending document belongs to `patient`.

    The blob stays where it is (same id, same wrapped key): only a Document row appears.
    If the sender gave an IPP with its system, it is remembered for next time.
    """
    with transaction.atomic():
        locked = PendingDocument.objects.select_for_update().get(pk=pending.pk)
        if locked.status != PendingStatus.PENDING:
            raise ReconcileError("this document was already reconciled")
        document = Document.objects.create(
            patient=patient, received_at=locked.received_at, **locked.stored_fields()
        )
        locked.status = PendingStatus.ATTACHED
        locked.document = document
        locked.resolved_by = by.get_username()
        locked.resolved_at = timezone.now()
        locked.resolution_note = note[:500]
        locked.save()
        identifiers = locked.identifiers or {}
        source, value = identifiers.get("ipp_source"), identifiers.get("ipp")
        if source and value:
            PatientIdentifier.objects.get_or_create(
                source=source, value=value, defaults={"patient": patient}
            )
        record(
            "intake.reconcile.attach",
            actor=by,
            patient=patient,
            document=document,
            extra={"pending_id": locked.pk, "note": note[:500]},
        )
        record_stored(document)
    pending.refresh_from_db()
    return document


def reject(pending: PendingDocument, *, by: Any, note: str) -> None:
    """Not this clinic's patient (or junk): kept encrypted and recorded, attached to nobody."""
    if not note.strip():
        raise ReconcileError("say why the document is rejected")
    with transaction.atomic():
        locked = PendingDocument.objects.select_for_update().get(pk=pending.pk)
        if locked.status != PendingStatus.PENDING:
            raise ReconcileError("this document was already reconciled")
        locked.status = PendingStatus.REJECTED
        locked.resolved_by = by.get_username()
        locked.resolved_at = timezone.now()
        locked.resolution_note = note[:500]
        locked.save()
        record(
            "intake.reconcile.reject",
            actor=by,
            reason=note[:500],
            extra={"pending_id": locked.pk, "sha256": locked.sha256},
        )
    pending.refresh_from_db()
