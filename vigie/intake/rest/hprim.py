"""REST intake of HPRIM Santé files: `POST /api/v1/hprim`, the file itself as the body.

An HPRIM file names its patients itself, so there is no metadata part: the body is the file
exactly as the laboratory's software wrote it (any charset; Vigie detects it, a `charset`
parameter is ignored). The same checks as `POST /api/v1/documents`, in the same order: who is
asking (the API key: 401/403, no body read), what method (405), how big the body says it is
(411/413, still nothing read), what it is (415), then the body, in memory only.

Stored through `hprim.channel`: one document per patient, all of them or none. The answer is
202 with one receipt id per patient in the file's order, whether each patient was found or
waits for reconciliation (a key holder must not learn who is a patient here). The same bytes
sent again, by any key of the same source system, get the first answer again
(`Idempotent-Replayed: true`) and store nothing: laboratories resend.
A refused file gets a problem+json whose `detail` names the line to fix.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from vigie.accounts.deny_by_default import authenticates_itself
from vigie.audit.log import record
from vigie.intake.hprim.channel import (
    Audit,
    already_received,
    file_control_id,
    read,
    receive_file,
    section_control_id,
)
from vigie.intake.hprim.parser import MAX_BYTES
from vigie.intake.models import ApiKey, ReceivedMessage
from vigie.intake.rest import problems
from vigie.intake.rest.views import RECEIVED_STATUS, _guarded, _rejected, admitted
from vigie.records.ingest_errors import InvalidDocument, StorageUnavailable
from vigie.records.inspection import HPRIM
from vigie.records.models import Document, PendingDocument

CHANNEL = "rest"
# What a laboratory's software or curl may call a text file it sends as is.
ACCEPTED_BODY_TYPES = frozenset(
    {"text/plain", "application/octet-stream", HPRIM, "application/x-hprim", "text/x-hprim"}
)


def source_of(key: ApiKey) -> str:
    """ReceivedMessage.source: the key's source system, so that a file sent again through
    another key of the same laboratory is still recognised, and never another lab's."""
    return f"hprim|{key.source_system}"[:200]


@authenticates_itself
@csrf_exempt
@_guarded
def hprim_file(request: HttpRequest) -> HttpResponse:
    """Receive one HPRIM file (see the module docstring and the OpenAPI document)."""
    key = admitted(
        request,
        MAX_BYTES,
        lambda size: (
            _("The request declares %(size)s bytes; an HPRIM file may have at most %(limit)s.")
            % {"size": size, "limit": MAX_BYTES}
        ),
    )
    if isinstance(key, HttpResponse):
        return key
    if request.content_type not in ACCEPTED_BODY_TYPES:
        return _rejected(
            request,
            key,
            problems.UNSUPPORTED_MEDIA_TYPE,
            _("Send the HPRIM file itself as the body, as text/plain or application/octet-stream."),
        )
    raw = request.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:  # pragma: no cover - the declared length bounds the stream
        return _rejected(request, key, problems.PAYLOAD_TOO_LARGE, _("The file is too large."))
    earlier = already_received(CHANNEL, source_of(key), raw)
    if earlier:
        return _replay(request, key, earlier, raw)
    return _store(request, key, raw)


def _store(request: HttpRequest, key: ApiKey, raw: bytes) -> HttpResponse:
    try:
        stored = receive_file(
            raw,
            source_system=key.source_system,
            channel=CHANNEL,
            received_as=CHANNEL,
            source=source_of(key),
            audit=_audit(request, key, file_control_id(raw)),
            extra={"key": key.name},
        )
    except InvalidDocument as exc:
        return _rejected(request, key, problems.INVALID_DOCUMENT, str(exc))
    except StorageUnavailable:
        return _rejected(
            request,
            key,
            problems.STORAGE_UNAVAILABLE,
            _("The file could not be stored, so nothing of it was kept. Retry later."),
        )
    except IntegrityError:
        # The same bytes, sent at the same moment through another request, won the race.
        again = already_received(CHANNEL, source_of(key), raw)
        if again:
            return _replay(request, key, again, raw)
        return _rejected(
            request,
            key,
            problems.CONFLICTING_RETRY,
            _("Another request stored the same data at the same moment; nothing was kept. Retry."),
        )
    return JsonResponse(_answer(stored.ids, stored.warnings), status=RECEIVED_STATUS)


def _audit(request: HttpRequest, key: ApiKey, file_id: str) -> Audit:
    def audit(row: Document | PendingDocument, index: int) -> None:
        is_document = isinstance(row, Document)
        record(
            "intake.received",
            request=request,
            document=row if isinstance(row, Document) else None,
            extra={
                "key": key.name,
                "channel": CHANNEL,
                "format": "hprim",
                "source_address": str(request.META.get("REMOTE_ADDR") or ""),
                # For the clinic (the audit trail), not for the sender's answer:
                "status": "stored" if is_document else "to_reconcile",
                "document_id" if is_document else "pending_id": str(row.pk),
                "control_id": section_control_id(file_id, index),
                "hprim_patient": index,
            },
        )

    return audit


def _answer(ids: list[str], warnings: list[str]) -> dict[str, Any]:
    # Receipts only: never who the patients are, nor whether they are known here.
    return {"status": "received", "ids": ids, "warnings": warnings}


def _replay(
    request: HttpRequest, key: ApiKey, earlier: list[ReceivedMessage], raw: bytes
) -> HttpResponse:
    ids = [row.document_id or row.pending_id for row in earlier]
    try:
        # The first answer's warnings: they depend on the bytes alone.
        warnings = read(raw).warnings
    except InvalidDocument:  # pragma: no cover - these bytes were stored, so they parsed
        warnings = []
    record(
        "intake.replayed",
        request=request,
        extra={"key": key.name, "channel": CHANNEL, "format": "hprim", "ids": ids},
    )
    response = JsonResponse(_answer(ids, warnings), status=RECEIVED_STATUS)
    response["Idempotent-Replayed"] = "true"
    return response
