"""The hot folder's HPRIM Santé files (`.hpr`, `.hpm`, `.hprim`, `.txt`): read, stored whole
through `hprim.channel` (one document per patient, all or nothing), then moved away.

An HPRIM file names its patients itself, so it comes without a sidecar; the folder's
`--source` is still the only source system it speaks for. Same outcomes as a PDF: stored (or
waiting for reconciliation) → done/; refused → quarantine/ with `<stem>.reason.txt` naming
the line to fix; storage, database or audit log unavailable → it stays, nothing kept.
A file whose bytes were already stored from this folder, under any name, goes to done/ with
a note: laboratories resend under a new, time-stamped name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import DatabaseError, IntegrityError
from django.utils.translation import gettext as _

from vigie.audit.log import AuditUnavailable, record
from vigie.intake.depot import NotRegular
from vigie.intake.folder_notes import Outcome
from vigie.intake.hprim.channel import (
    Audit,
    StoredFile,
    already_received,
    file_control_id,
    receive_file,
    section_control_id,
)
from vigie.intake.hprim.parser import MAX_BYTES
from vigie.intake.models import ReceivedMessage
from vigie.records.ingest_errors import InvalidDocument, StorageUnavailable
from vigie.records.models import Document, PendingDocument

if TYPE_CHECKING:
    from vigie.intake.folder import HotFolder

CHANNEL = "folder"


def take_hprim(folder: HotFolder, name: str) -> Outcome | None:
    """Store one HPRIM file and move it away; None if it must stay (and be tried again)."""
    try:
        content = folder.depot.read(name, MAX_BYTES + 1)
    except NotRegular as exc:
        return folder._refuse_irregular(name, None, exc)
    except FileNotFoundError:
        return None  # taken away by its sender meanwhile
    except OSError as exc:
        folder._warn_once(name, "read", _("cannot read %(file)s: %(error)s")
                          % {"file": name, "error": exc.strerror or exc})  # fmt: skip
        return None
    if len(content) > MAX_BYTES:
        return folder._refuse(
            name,
            None,
            _("the HPRIM file is larger than %(limit)d MiB: split it into several files")
            % {"limit": MAX_BYTES // (1024 * 1024)},
        )
    try:
        earlier = already_received(CHANNEL, folder.source, content)
    except DatabaseError as exc:
        folder._warn_once(name, "db", _("database unavailable, %(file)s waits: %(error)s")
                          % {"file": name, "error": exc})  # fmt: skip
        return None
    if earlier:
        return _duplicate(folder, name, earlier)
    try:
        stored = receive_file(
            content,
            source_system=folder.source_system,
            channel=CHANNEL,
            received_as=CHANNEL,
            source=folder.source,
            audit=_audit(folder, name, file_control_id(content)),
            extra={"file": name},
            today=folder.today(),
        )
    except InvalidDocument as exc:
        return folder._refuse(name, None, str(exc))
    except IntegrityError:
        # Another process took the same bytes between our look-up and our commit.
        again = already_received(CHANNEL, folder.source, content)
        if not again:
            raise
        return _duplicate(folder, name, again)
    except (StorageUnavailable, AuditUnavailable, DatabaseError) as exc:
        # Nothing was kept (the file's one transaction rolled back): it stays for next pass.
        folder._warn_once(name, "store", _("cannot store %(file)s now, it stays: %(error)s")
                          % {"file": name, "error": exc})  # fmt: skip
        return None
    return _stored(folder, name, stored)


def _audit(folder: HotFolder, name: str, file_id: str) -> Audit:
    def audit(row: Document | PendingDocument, index: int) -> None:
        is_document = isinstance(row, Document)
        record(
            "intake.received",
            document=row if isinstance(row, Document) else None,
            patient=row.patient if isinstance(row, Document) else None,
            extra={
                "channel": CHANNEL,
                "source": folder.source,
                "control_id": section_control_id(file_id, index),
                "file": name,
                "hprim_patient": index,
                "pending_id": "" if is_document else str(row.pk),
            },
        )

    return audit


def _stored(folder: HotFolder, name: str, stored: StoredFile) -> Outcome:
    # As for a PDF, done/ says nothing of whether the patients were found (the sender would
    # learn who is a patient here); the parse's doubts are the lab's to fix, so they are said.
    detail = ""
    if stored.warnings:
        detail = "\n".join(
            [_("stored, but the file deserves a look:"), *(f"- {w}" for w in stored.warnings)]
        )
    folder._finish(name, None, detail)
    status = "stored" if stored.all_matched else "pending"
    ids = ", ".join(stored.ids)
    folder._say(_("%(file)s: %(status)s (%(id)s)") % {"file": name, "status": status, "id": ids})
    return Outcome(name, status, detail, ",".join(stored.ids))


def _duplicate(folder: HotFolder, name: str, earlier: list[ReceivedMessage]) -> Outcome:
    ids = [row.document_id or row.pending_id for row in earlier]
    detail = _(
        "already received on %(when)s (%(ids)s): the same file is not stored twice, "
        "whatever its name; a corrected report must differ from the first one"
    ) % {"when": earlier[0].received_at.isoformat(timespec="seconds"), "ids": ", ".join(ids)}
    folder._finish(name, None, detail)
    folder._say(_("%(file)s: duplicate of %(id)s") % {"file": name, "id": ", ".join(ids)})
    return Outcome(name, "duplicate", detail, ",".join(ids))
