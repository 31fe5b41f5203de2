"""Events other apps announce with signals, written to the audit chain."""

from __future__ import annotations

from typing import Any

from vigie.audit.log import record
from vigie.records.models import Document


def document_stored(sender: object, *, document: Document, **kwargs: Any) -> None:
    # Runs inside the ingest transaction: the row and its event commit together.
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
