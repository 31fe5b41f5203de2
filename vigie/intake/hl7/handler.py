"""One HL7 message in, one ACK out: parse, store through `receive()`, audit, acknowledge.

Synchronous and Django-bound: the MLLP server calls it in a worker thread. It never raises:
whatever the bytes, the answer is an ACK (AA, AE or AR), and AA is returned only once the
document (or the document waiting for reconciliation) and its `ReceivedMessage` row are
committed, so an acknowledged message survives a crash.

AA also answers a message whose patient is not known exactly: it is stored as a pending
document for an administrator to reconcile. The lab has delivered it; sending it again
would not make the match better, and an AE would make its interface engine retry forever.

Who sends is the configured `MllpSender` the connection authenticated as (its client
certificate, or the loopback listener's `--sender`), never MSH-3/MSH-4: the document's
source system, the results' source, the audit events and the duplicate check
all name that sender. A PID-3 IPP is read in the sender's own assigning authority (or the
clinic's `--local-authority`); a message naming any other authority is refused with AR,
nothing stored or learnt.

Every message leaves an audit event: `intake.received` (in the document's transaction),
`intake.duplicate` for a repeated control id, `intake.rejected` for AE/AR. If the audit log
cannot be written for a rejection, the answer becomes AE 207 so the sender tries again
rather than abandoning a message nobody recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.db import DatabaseError, IntegrityError, connection

from vigie.audit.log import AuditUnavailable, record
from vigie.intake.hl7 import ack
from vigie.intake.hl7.oru import read_oru
from vigie.intake.hl7.parser import ErrorCode, Header, HL7Error, Message, parse, peek_header
from vigie.intake.hl7.results import to_results
from vigie.intake.models import MllpSender, ReceivedMessage
from vigie.lib import rawsql
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import ForeignSource, InvalidDocument, StorageUnavailable
from vigie.records.inspection import HL7_V2
from vigie.records.models import Document, DocumentKind, PendingDocument
from vigie.records.receive import Sender, receive
from vigie.records.results import ResultSet

logger = logging.getLogger(__name__)

CHANNEL = "hl7"


@dataclass(frozen=True)
class Reply:
    """The ACK to send back, and what happened (for logs and tests)."""

    ack: bytes
    code: str
    control_id: str = ""
    document_id: str = ""
    pending_id: str = ""
    duplicate: bool = False
    reason: str = ""


def _header(message: Message) -> Header:
    msh = message.msh
    return Header(
        sending_application=msh.value(3),
        sending_facility=msh.value(4),
        receiving_application=msh.value(5),
        receiving_facility=msh.value(6),
        control_id=message.control_id,
        processing_id=msh.value(11),
        version=message.version,
        trigger=msh.value(9, 2),
        charset=message.charset,
    )


def received_from(sender: MllpSender, message: Message) -> str:
    """ReceivedMessage.source: the authenticated sender first, so that no sender can take a
    control id in another's space (and have that lab's real message dropped as a
    duplicate); MSH-3^MSH-4 within it, since one lab's applications number separately."""
    return f"{sender.source_system}|{message.source}"[:200]


def _facts(message: Message, sender: MllpSender) -> dict[str, Any]:
    return {
        "channel": CHANNEL,
        "sender": sender.name,
        "source_system": sender.source_system,
        "control_id": message.control_id,
        "version": message.version,
    }


def handle(raw: bytes, *, sender: MllpSender, local_authority: str = "") -> Reply:
    """The ACK for `raw` (one MLLP frame's content), after storing what it carries.

    `sender` is who the connection proved to be. `local_authority` names this clinic's own assigning authority in PID-3: an IPP from it
    is matched against `Patient.ipp`, any other against the sending system's identifiers.
    (The caller's thread owns its database connection: the MLLP server's workers recycle
    theirs around each message; see `server.in_worker`.)
    """
    try:
        header = peek_header(raw)
    except Exception:  # an ACK must go out even if the header cannot be read at all
        logger.exception("hl7: unreadable header")
        header = Header()
    try:
        return _handle(raw, header, sender, local_authority)
    except Exception as exc:  # every failure becomes an ACK, see `reply_for`
        return reply_for(header, exc, sender)


def reply_for(header: Header, exc: Exception, sender: MllpSender) -> Reply:
    """The AE/AR (audited) for a message that was not stored because of `exc`."""
    if isinstance(exc, HL7Error):
        return refuse(header, exc, sender=sender)
    if isinstance(exc, ForeignSource):
        # AR, not AE: resending will not make another lab's authority this sender's.
        return refuse(
            header,
            HL7Error(ack.REJECT, ErrorCode.TABLE_VALUE_NOT_FOUND, str(exc), segment="PID"),
            sender=sender,
        )
    if isinstance(exc, InvalidDocument):
        return refuse(header, HL7Error(ack.ERROR, ErrorCode.DATA_TYPE, str(exc)), sender=sender)
    if isinstance(exc, (StorageUnavailable, AuditUnavailable, DatabaseError)):
        logger.warning("hl7: %s not stored: %s", header.control_id, exc)
        return refuse(
            header,
            HL7Error(
                ack.ERROR,
                ErrorCode.INTERNAL_ERROR,
                f"temporarily unable to store the message ({type(exc).__name__}); nothing was "
                "kept: send it again later",
            ),
            sender=sender,
        )
    logger.error("hl7: unexpected failure on %s", header.control_id, exc_info=exc)
    return refuse(
        header,
        HL7Error(
            ack.ERROR,
            ErrorCode.INTERNAL_ERROR,
            "internal error; nothing was kept: send the message again later (the "
            "administrator has the details in the log)",
        ),
        sender=sender,
    )


def _handle(raw: bytes, header: Header, sender: MllpSender, local_authority: str) -> Reply:
    message = parse(raw)
    header = _header(message)
    taken = _taken(message, sender)
    if taken is not None:
        return _duplicate(header, message, taken, sender)
    converted = convert(raw, message, sender, local_authority)
    within = received_hook(message, sender)
    try:
        received = receive(
            converted.patient,
            converted.meta,
            converted.content,
            channel=CHANNEL,
            extra=_facts(message, sender),
            within=within,
            results=converted.results,
            attachment=converted.attachment,
        )
    except IntegrityError:
        # Another connection delivered the same message a moment ago and won the race.
        taken = _taken(message, sender)
        if taken is None:
            raise
        return _duplicate(header, message, taken, sender)
    return Reply(
        ack=ack.build(header, ack.ACCEPT),
        code=ack.ACCEPT,
        control_id=message.control_id,
        document_id=received.document.pk if received.document else "",
        pending_id=received.pending.pk if received.pending else "",
    )


@dataclass(frozen=True)
class Converted:
    """What one ORU becomes: the patient as the message names them, the document's
    metadata, the content to seal and its results. The seam between reading HL7 and storing: the
    single-message path (`handle`) and the MLLP group commit (`batch.handle_many`) both
    store exactly what `convert` returns."""

    patient: Sender
    meta: DocumentMeta
    content: bytes
    # The values the message carries, sealed beside it, and the sender's embedded PDF.
    results: ResultSet
    attachment: bytes | None


def convert(raw: bytes, message: Message, sender: MllpSender, local_authority: str) -> Converted:
    """The document an ORU^R01 becomes (an `HL7Error` when its content is not usable): the
    message exactly as received, its values as data beside it."""
    # The results name the authenticated sender as their source, not MSH-4.
    result = replace(read_oru(message), source_name=sender.source_system)
    patient = _patient(result.patient, sender, local_authority)
    results = to_results(result, message, sender.source_system)
    clinical_date = result.clinical_date
    if clinical_date is None:  # read_oru requires OBR-7; kept for the type checker
        raise HL7Error(ack.ERROR, ErrorCode.REQUIRED_FIELD_MISSING, "OBR-7 missing", segment="OBR")
    meta = DocumentMeta(
        kind=DocumentKind.LAB_RESULT,
        title=result.title,
        clinical_date=clinical_date,
        source_system=sender.source_system,
        author=result.author,
        # The message itself, exactly as received, is the document; its values are sealed
        # beside it (and the sender's embedded PDF, if any, with them).
        content_type=HL7_V2,
    )
    attachment = result.attachment.data if result.attachment is not None else None
    return Converted(patient, meta, raw, results, attachment)


def received_hook(
    message: Message, sender: MllpSender
) -> Callable[[Document | PendingDocument], None]:
    """What runs in the stored row's transaction: the ReceivedMessage that makes a resend
    a duplicate, and the `intake.received` event (a round inserts the former with its
    others: `received_row` and `received_event` apart)."""
    row_for, event = received_row(message, sender), received_event(message, sender)

    def within(row: Document | PendingDocument) -> None:
        # Raw, as `create()` writes it: on the MLLP path the ORM's INSERT cost more CPU
        # than the database's work.
        rawsql.insert(row_for(row)[0], connection)
        event(row)

    return within


def received_row(
    message: Message, sender: MllpSender
) -> Callable[[Document | PendingDocument], list[ReceivedMessage]]:
    """The ReceivedMessage of the stored row, unsaved (`records.batch.Arrival.rows`)."""
    source = received_from(sender, message)

    def rows(row: Document | PendingDocument) -> list[ReceivedMessage]:
        is_document = isinstance(row, Document)
        return [
            ReceivedMessage(
                channel=CHANNEL,
                source=source,
                control_id=message.control_id,
                document_id=row.pk if is_document else "",
                pending_id="" if is_document else row.pk,
            )
        ]

    return rows


def received_event(
    message: Message, sender: MllpSender
) -> Callable[[Document | PendingDocument], None]:
    """The `intake.received` event of the stored row, in its transaction."""
    facts = _facts(message, sender)

    def within(row: Document | PendingDocument) -> None:
        is_document = isinstance(row, Document)
        record(
            "intake.received",
            patient=row.patient if isinstance(row, Document) else None,
            document=row if isinstance(row, Document) else None,
            extra={**facts, "pending_id": "" if is_document else row.pk},
        )

    return within


def _taken(message: Message, sender: MllpSender) -> ReceivedMessage | None:
    return ReceivedMessage.objects.filter(
        channel=CHANNEL, source=received_from(sender, message), control_id=message.control_id
    ).first()


def _duplicate(
    header: Header, message: Message, taken: ReceivedMessage, sender: MllpSender
) -> Reply:
    record(
        "intake.duplicate",
        extra={
            **_facts(message, sender),
            "document_id": taken.document_id,
            "pending_id": taken.pending_id,
        },
    )
    return Reply(
        ack=ack.build(header, ack.ACCEPT),
        code=ack.ACCEPT,
        control_id=message.control_id,
        document_id=taken.document_id,
        pending_id=taken.pending_id,
        duplicate=True,
    )


def _patient(patient: Sender, sender: MllpSender, local_authority: str) -> Sender:
    """PID-3's IPP in its system: the clinic's own ("" for `receive`), the sender's own when
    unqualified, else as named (and refused by `receive` unless it is the sender's)."""
    if local_authority and patient.ipp_source.lower() == local_authority.lower():
        return replace(patient, ipp_source="")
    if patient.ipp and not patient.ipp_source:
        return replace(patient, ipp_source=sender.source_system)
    return patient


def refuse(header: Header, error: HL7Error, *, sender: MllpSender | None) -> Reply:
    """The AE/AR for a message not stored, after auditing the refusal (under the sender
    the connection proved to be, if it got that far)."""
    try:
        record(
            "intake.rejected",
            outcome="failure",
            reason=error.text[:500],
            extra={
                "channel": CHANNEL,
                "sender": sender.name if sender else "",
                "source_system": sender.source_system if sender else "",
                "control_id": header.control_id[:200],
                "ack": error.ack_code,
                "error_code": int(error.code),
            },
        )
    except Exception:
        logger.exception("hl7: cannot audit the refusal of %s", header.control_id)
        error = HL7Error(
            ack.ERROR,
            ErrorCode.INTERNAL_ERROR,
            f"{error.text} (and the refusal could not be recorded: send the message again later)",
        )
    return Reply(
        ack=ack.build(header, error.ack_code, error),
        code=error.ack_code,
        control_id=header.control_id,
        reason=error.text,
    )
