"""`ingest()`: store a document of a known patient, the one way a `Document` is created.

Every intake channel reaches it through `receive()` (which first matches the patient); the
demo and the guard's decoys call it directly.

Order matters for "nothing lost" and "never plaintext at rest":
1. the content streams through the vault: encrypted chunk by chunk, fsynced, renamed;
2. then the row (and its audit hook) commits in one transaction;
3. only then does `ingest` return, so a caller may acknowledge.
A crash between 1 and 2 leaves an orphan blob (ciphertext nobody references), which
`vigie vault fsck` reports and removes; it never leaves a row without its blob.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, BinaryIO, TypeVar

from django.conf import settings
from django.db import connection, transaction

from vigie import vault
from vigie.audit import log as audit_log
from vigie.audit.log import record
from vigie.lib import rawsql
from vigie.records.identifiers import InvalidIdentifier, validate_ipp, validate_nir
from vigie.records.ingest_errors import (
    IngestError,
    InvalidDocument,
    StorageUnavailable,
    UnknownPatient,
)
from vigie.records.models import (
    Document,
    DocumentKind,
    Patient,
    PendingDocument,
    SealedResults,
    new_document_id,
)
from vigie.records.results import ResultSet
from vigie.records.results_store import seal_results

__all__ = [
    "DocumentMeta",
    "IngestError",
    "InvalidDocument",
    "PatientRef",
    "StorageUnavailable",
    "UnknownPatient",
    "find_patient",
    "ingest",
    "record_stored",
    "refuse_control_characters",
    "seal_and_insert",
]

Row = TypeVar("Row", Document, PendingDocument)


@dataclass(frozen=True)
class PatientRef:
    """How a sender identifies the patient. Matching is exact; there is no guessing here."""

    ins: str | None = None
    ipp: str | None = None


@dataclass(frozen=True)
class DocumentMeta:
    kind: str
    title: str
    clinical_date: date
    source_system: str
    author: str = ""
    content_type: str = "application/pdf"


def find_patient(ref: PatientRef) -> Patient:
    """Exact match on INS, else on IPP. Both given and disagreeing → refused."""
    try:
        ins = validate_nir(ref.ins) if ref.ins else None
        ipp = validate_ipp(ref.ipp) if ref.ipp else None
    except InvalidIdentifier as exc:
        raise UnknownPatient(str(exc)) from None
    if ins is None and ipp is None:
        raise UnknownPatient("no patient identifier given (INS or IPP)")
    by_ins = rawsql.first_by(Patient, "ins", ins, connection) if ins else None
    by_ipp = rawsql.first_by(Patient, "ipp", ipp, connection) if ipp else None
    if by_ins and by_ipp and by_ins.pk != by_ipp.pk:
        raise UnknownPatient("the INS and the IPP designate two different patients")
    if by_ins and ipp and by_ins.ipp != ipp:
        # Every patient has one IPP here: an INS with someone else's (or no one's) IPP is a
        # mix-up at the source, never resolved by picking one of the two.
        raise UnknownPatient("the INS designates a patient whose IPP here is not the one sent")
    patient = by_ins or by_ipp
    if patient is None:
        raise UnknownPatient("no patient with this INS or IPP")
    return patient


# Built once: `DocumentKind.values` rebuilds its list (and every label) on each read, a
# cost paid by every received document.
_KINDS = frozenset(DocumentKind.values)


def _validate_meta(meta: DocumentMeta) -> None:
    if meta.kind not in _KINDS:
        raise InvalidDocument(
            f"unknown document kind {meta.kind!r}; expected one of {', '.join(DocumentKind.values)}"
        )
    if not meta.title.strip():
        raise InvalidDocument("the document title is empty")
    if len(meta.title) > 255:
        raise InvalidDocument("the document title is longer than 255 characters")
    if not meta.source_system.strip():
        raise InvalidDocument("the source system is empty")
    if not meta.content_type or "/" not in meta.content_type:
        raise InvalidDocument(f"invalid content type {meta.content_type!r}")
    for name in ("title", "author", "source_system", "content_type"):
        refuse_control_characters(getattr(meta, name), f"the document's {name}")


def meta_fields(meta: DocumentMeta) -> dict[str, Any]:
    """The row's values for what the sender said, as stored (names without their margins)."""
    return {
        "kind": meta.kind,
        "title": meta.title.strip(),
        "clinical_date": meta.clinical_date,
        "author": meta.author.strip(),
        "source_system": meta.source_system.strip(),
        "content_type": meta.content_type,
    }


# C0 controls but tab, newline and carriage return, and DEL: never in a title or a name.
# PostgreSQL refuses NUL in text outright; the others would end up in pages and reports.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def refuse_control_characters(value: str, what: str) -> None:
    match = _CONTROL_RE.search(value or "")
    if match:
        raise InvalidDocument(
            f"{what} contains a control character (U+{ord(match.group()):04X}) at position "
            f"{match.start()}: send plain text"
        )


def record_stored(document: Document) -> None:
    """Audit a document's arrival. Call it inside the transaction that creates the row (the
    `do_*` way): after a crash the row and its event both exist, or neither does."""
    record(
        "intake.document.stored",
        document=document,
        patient=document.patient,
        extra={
            "source_system": document.source_system,
            "kind": document.kind,
            "size": document.size,
        },
    )


def ingest(
    patient: Patient | PatientRef,
    meta: DocumentMeta,
    content: BinaryIO,
    *,
    active_content: bool = False,
    content_warnings: list[str] | None = None,
    within: Callable[[Document], None] | None = None,
    results: ResultSet | None = None,
    attachment: bytes | None = None,
) -> Document:
    """Store `content` encrypted for `patient`; return only once blob and row are durable.

    `results`: the lab values the message carries (and `attachment`, the sender's own
    document embedded in it, as `results.attachment` describes). `content` stays the
    message exactly as received; the results are sealed beside it (`SealedResults`, its own
    data key) and committed in the document row's transaction.

    `within(document)` runs inside the row's transaction: an intake channel records there
    that it took this message (a control id, a file's hash), so that the document and that
    record commit together, and a retried delivery is recognised instead of stored twice.
    """
    _validate_meta(meta)
    target = patient if isinstance(patient, Patient) else find_patient(patient)

    def then(document: Document) -> None:
        if within is not None:
            within(document)
        record_stored(document)

    return seal_and_insert(
        Document,
        content,
        max_size=settings.VIGIE_MAX_DOCUMENT_SIZE,
        fields={
            "patient": target,
            **meta_fields(meta),
            "active_content": active_content,
            "content_warnings": list(content_warnings or []),
        },
        then=then,
        results=results,
        attachment=attachment,
    )


def seal_and_insert(
    model: type[Row],
    content: BinaryIO,
    *,
    max_size: int,
    fields: dict[str, Any],
    then: Callable[[Row], None],
    results: ResultSet | None = None,
    attachment: bytes | None = None,
) -> Row:
    """Seal `content` under a new id, then insert the `model` row that holds its key, and run
    `then(row)` (the audit event, the channel's own record) in the row's transaction.

    Blob first, row second: a crash in between leaves an orphan blob for fsck, never a row
    without its blob. Raises InvalidDocument (larger than `max_size`) or StorageUnavailable
    (the store refused) with nothing stored.
    """
    row_id = new_document_id()
    store = vault.get_blob_store()
    try:
        sealed = vault.seal(row_id, content, store=store, max_size=max_size)
    except vault.DocumentTooLarge as exc:
        raise InvalidDocument(str(exc)) from None
    except OSError as exc:
        raise StorageUnavailable(f"cannot store the document: {exc.strerror or exc}") from exc
    except vault.StoreUnavailable as exc:
        # The object store timed out or failed; a failed upload was aborted: nothing stored.
        raise StorageUnavailable(f"cannot store the document: {exc}") from exc
    try:
        # Sealed before the transaction (the encryption is the slow part), inserted in it.
        sealed_results = seal_results_of(row_id, results, attachment)
        # `together()`: the events `then` records (the channel's, the arrival's) are
        # appended as one batch, in this transaction, when the block ends.
        with transaction.atomic(), audit_log.together():
            row = model(
                id=row_id,
                size=sealed.size,
                sha256=sealed.sha256,
                kek_id=sealed.kek_id,
                wrapped_key=sealed.wrapped_key,
                **fields,
            )
            # Raw, as `create()` would write it (no signal or save() rule concerns a new
            # row): the ORM's INSERT cost more CPU than the rest of the transaction.
            rawsql.insert(row, connection)
            if sealed_results is not None:
                sealed_results.save(force_insert=True)
            then(row)
    except BaseException:
        # The row did not commit: the blob is an orphan now, remove it rather than wait for
        # fsck. (If we die before this line, fsck finds it.)
        store.delete(row_id)
        raise
    return row


def seal_results_of(
    row_id: str, results: ResultSet | None, attachment: bytes | None
) -> SealedResults | None:
    if results is None:
        if attachment is not None:
            raise InvalidDocument("an attachment is kept with its results only")
        return None
    if not isinstance(results, ResultSet):
        raise InvalidDocument("results must be a records.results.ResultSet")
    try:
        return seal_results(row_id, results, attachment)
    except vault.VaultError as exc:
        raise InvalidDocument(f"cannot seal the results: {exc}") from None
