"""Storing an HPRIM file, whichever channel brought it (hot folder, REST): one document per
patient, the whole file or nothing.

    bytes ─► parse (refused whole with the line to fix) ─► for each patient, in the file's
          order: the patient's own bytes as received ─► `receive()` (exact NIR or
          reconciliation) ─► all committed in ONE transaction ─► the caller acknowledges

**All or nothing per file.** A multi-patient file is one delivery: the laboratory resends
it whole, and the folder can move it to done/ or to quarantine/, not half of it to each.
Storing patient 1 and failing on patient 2 would leave a file that is neither stored nor
refused: resent, patient 1 would be a duplicate, patient 2 new, and nobody could tell the lab
what happened to "the file". So every patient's row commits in one transaction with its
`ReceivedMessage`; if anything fails midway (the store is full, the database or the audit log
refuses), the transaction rolls back, the blobs already sealed for earlier patients are
deleted, and the caller leaves the file where it was (or answers "retry"). The parser is
all-or-nothing too: one broken patient refuses the file, with the line to fix.

**What each document holds.** Its sealed content is that patient's part of the file, bytes as
received (`patient_bytes()`): from its first header line through the marker that closes it
(`****FIN****`, or `****FINFICHIER****` when it directly follows a patient) and that
marker's line break,
or to the end of the file when no marker closes it; the file's byte-order mark in front when
it had one. Each part is thus a complete HPRIM file on its own, in the file's charset, and a
patient's document never holds another patient's lines.

**Its values.** `results.result_set()`: the patient's `RES|…` lines (and `TEX|…` comments,
and the printed report's text) as a `records.results.ResultSet`, sealed beside the document
in the same transaction (`receive(..., results=...)`), for the portal's table and history.
A result the contract refuses (a label of thousands of characters) refuses the file, with
its line.

**Who it is.** `matching.sender_for()`: an exact NIR only when it can be this patient's,
otherwise names and birth date for reconciliation, which never attach on their own.

**Duplicates.** A file is recognised by the SHA-256 of its bytes, not its name: laboratories
resend the same file under a new, time-stamped name. Each patient's row is recorded as
`<file id>/<n>`; since they commit together, `<file id>/1` stands for the whole file.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from vigie import vault
from vigie.intake.models import ReceivedMessage
from vigie.lib import rawsql
from vigie.records.batch import Arrival
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import InvalidDocument
from vigie.records.inspection import HPRIM, ContentReport
from vigie.records.models import Document, DocumentKind, PendingDocument
from vigie.records.receive import Received, receive
from vigie.records.results import ResultSet

from .matching import sender_for
from .parser import HprimError, parse, patient_bytes
from .result import HprimFile, PatientReport
from .results import UnreadableResults, result_set

# The contract's name for an HPRIM file (records.inspection): the portal downloads it as .hpr.
CONTENT_TYPE = HPRIM
# Tab and form feed are text in an HPRIM header but not in a title.
_BLANKS = re.compile(r"[\t\x0c]")
_TITLE_MAX = 255
_AUTHOR_MAX = 200

Row = Document | PendingDocument
# The channel's own audit event for one patient's row, in that row's transaction.
Audit = Callable[[Row, int], None]


@dataclass(frozen=True)
class StoredFile:
    """What became of a file: one `Received` per patient, in the file's order."""

    control_id: str
    patients: list[Received]
    warnings: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [each.id for each in self.patients]

    @property
    def all_matched(self) -> bool:
        return all(each.document is not None for each in self.patients)


def file_control_id(raw: bytes) -> str:
    """What identifies a delivered HPRIM file: its bytes (see the module docstring)."""
    return "hprim:" + hashlib.sha256(raw).hexdigest()


def section_control_id(file_id: str, index: int) -> str:
    return f"{file_id}/{index}"


def already_received(channel: str, source: str, raw: bytes) -> list[ReceivedMessage]:
    """The rows of an earlier delivery of these bytes (patient 1 first), or []."""
    file_id = file_control_id(raw)
    first = ReceivedMessage.objects.filter(
        channel=channel, source=source, control_id=section_control_id(file_id, 1)
    ).first()
    if first is None:
        return []
    rows = ReceivedMessage.objects.filter(
        channel=channel, source=source, control_id__startswith=file_id + "/"
    )
    return sorted(rows, key=lambda row: int(row.control_id.rpartition("/")[2]))


def read(raw: bytes, today: datetime.date | None = None) -> HprimFile:
    """The parse, or InvalidDocument with what the laboratory must fix (line included)."""
    try:
        return parse(raw, today=today)
    except HprimError as exc:
        raise InvalidDocument(f"not a valid HPRIM file: {exc}") from None


def receive_file(
    raw: bytes,
    *,
    source_system: str,
    channel: str,
    received_as: str,
    source: str,
    audit: Audit,
    extra: dict[str, object] | None = None,
    today: datetime.date | None = None,
) -> StoredFile:
    """Store every patient of `raw` or none of them; see the module docstring.

    `channel` is the document's (`receive()`'s), `received_as` and `source` the
    `ReceivedMessage` row's. Raises InvalidDocument (the file is refused: nothing stored),
    StorageUnavailable, AuditUnavailable, DatabaseError or IntegrityError (nothing stored:
    leave the file and retry, or look for an earlier delivery). Returns once everything is
    committed. `today` is for tests of date-bound refusals (a birth date in the future).
    """
    parsed, parts = read_parts(raw, source_system, today)
    file_id = file_control_id(raw)
    stored: list[Received] = []
    try:
        # One transaction for the file: each receive() below is a savepoint in it.
        with transaction.atomic():
            for index, part in enumerate(parts, start=1):
                stored.append(
                    receive(
                        sender_for(part.report),
                        _meta(part.report, source_system),
                        part.content,
                        # The values, sealed beside the file in the same transaction.
                        results=part.values,
                        channel=channel,
                        extra={**(extra or {}), "hprim_patient": index},
                        within=_remember(received_as, source, file_id, index, audit),
                        inspected=ContentReport(
                            CONTENT_TYPE, warnings=_warnings_of(parsed, part.report, index)
                        ),
                    )
                )
    except BaseException:
        # The rows rolled back; the blobs sealed for the patients before the failure are
        # orphans now. Removed here rather than left for fsck (which would find them).
        _forget(stored)
        raise
    return StoredFile(file_id, stored, list(parsed.warnings))


@dataclass(frozen=True)
class Part:
    """One patient of a file, checked: their bytes as received and their values."""

    report: PatientReport
    content: bytes
    values: ResultSet


def read_parts(
    raw: bytes, source_system: str, today: datetime.date | None = None
) -> tuple[HprimFile, list[Part]]:
    """The parse and each patient's part, or InvalidDocument naming what to fix: every
    check that needs no database, made before anything of the file is stored."""
    parsed = read(raw, today)
    limit = settings.VIGIE_MAX_DOCUMENT_SIZE
    parts: list[Part] = []
    for index, report in enumerate(parsed.patients, start=1):
        part = patient_bytes(raw, parsed, report)
        if len(part) > limit:
            raise InvalidDocument(
                f"patient {index}'s part of the file is larger than the limit of {limit} bytes"
            )
        try:
            values = result_set(report, source_system)
        except UnreadableResults as exc:
            raise InvalidDocument(
                f"not a valid HPRIM file: line {exc.line}: patient {index} "
                f"(line {report.first_line}): {exc.reason}"
            ) from None
        parts.append(Part(report, part, values))
    return parsed, parts


def arrivals(
    raw: bytes,
    *,
    source_system: str,
    channel: str,
    received_as: str,
    source: str,
    audit: Audit,
    unit: int,
    extra: dict[str, object] | None = None,
    today: datetime.date | None = None,
    parsed: tuple[HprimFile, list[Part]] | None = None,
) -> tuple[StoredFile, list[Arrival]]:
    """`receive_file` for a round (`records.batch`): the file's patients as arrivals of one
    unit, so that the round stores them all or none; the same checks, rows and events.
    Returns the file's facts (its id and parse warnings; `patients` empty until the round's
    outcomes fill them in). InvalidDocument as `receive_file`; a DatabaseError when the
    NIR cannot be looked up. `parsed`: `read_parts(raw, source_system, today)` if the
    caller has it already (a round reads every file before it looks up their NIRs)."""
    parsed_file, parts = parsed or read_parts(raw, source_system, today)
    file_id = file_control_id(raw)
    found = [
        Arrival(
            sender=sender_for(part.report),
            meta=_meta(part.report, source_system),
            content=part.content,
            channel=channel,
            extra={**(extra or {}), "hprim_patient": index},
            rows=_received_row(received_as, source, file_id, index),
            within=functools.partial(_audit_as, audit, index),
            results=part.values,
            inspected=ContentReport(
                CONTENT_TYPE, warnings=_warnings_of(parsed_file, part.report, index)
            ),
            unit=unit,
        )
        for index, part in enumerate(parts, start=1)
    ]
    return StoredFile(file_id, [], list(parsed_file.warnings)), found


def _remember(
    received_as: str, source: str, file_id: str, index: int, audit: Audit
) -> Callable[[Row], None]:
    row_of = _received_row(received_as, source, file_id, index)

    def within(row: Row) -> None:
        # Raw, as `create()` writes it (as the MLLP path does): for every patient of every
        # file, the ORM's INSERT cost more CPU than the database's work.
        rawsql.insert(row_of(row)[0], connection)
        audit(row, index)

    return within


def _audit_as(audit: Audit, index: int, row: Row) -> None:
    audit(row, index)


def _received_row(
    received_as: str, source: str, file_id: str, index: int
) -> Callable[[Row], list[ReceivedMessage]]:
    """The ReceivedMessage of a patient's stored row, unsaved: a round inserts it with the
    round's others, in one statement (`records.batch.Arrival.rows`)."""

    def rows(row: Row) -> list[ReceivedMessage]:
        is_document = isinstance(row, Document)
        return [
            ReceivedMessage(
                channel=received_as,
                source=source,
                control_id=section_control_id(file_id, index),
                document_id=row.pk if is_document else "",
                pending_id="" if is_document else row.pk,
            )
        ]

    return rows


def _meta(report: PatientReport, source_system: str) -> DocumentMeta:
    sender = _BLANKS.sub(" ", report.sender.name or report.sender.code).strip()
    reference = _BLANKS.sub(" ", report.reference).strip()
    # The laboratory and its reference: never an analyte (titles sit in clear columns).
    title = " – ".join(part for part in (sender, reference) if part) or "HPRIM"
    return DocumentMeta(
        kind=DocumentKind.LAB_RESULT,
        title=title[:_TITLE_MAX],
        # No report date (the parser warned): the day it arrived is the best we know.
        clinical_date=report.date or timezone.localdate(),
        source_system=source_system,
        author=sender[:_AUTHOR_MAX],
        content_type=CONTENT_TYPE,
    )


def _warnings_of(parsed: HprimFile, report: PatientReport, index: int) -> list[str]:
    """The parse's doubts that concern this patient (theirs, and the file's own), for the
    reconciliation clerk. They name lines, never their content."""
    own = f"patient {index} (line {report.first_line})"
    return [w for w in parsed.warnings if w.startswith(own) or not w.startswith("patient ")]


def _forget(stored: list[Received]) -> None:
    store = vault.get_blob_store()
    for each in stored:
        with suppress(vault.VaultError, OSError):
            store.delete(each.id)
