"""REST intake: `POST /api/v1/documents` and the OpenAPI document that describes it.

Both views authenticate callers themselves with an API key (`@authenticates_itself`): a key
is a system's credential, never a session, so CSRF does not apply (no cookie authenticates
anything here). Order of the checks in `documents`: who is asking (401/403, no body read),
what method (405), how big the body says it is (411/413, still nothing read), what it is
(415), and only then the body, parsed in memory only (`uploads.py`).

Every use of a key leaves one audit event naming it: `intake.received` in the very
transaction that stores the document, `intake.replayed` for an idempotent retry,
`intake.rejected` for a problem found after authentication; `authenticate()` records the
refusals of the key itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from vigie.accounts.deny_by_default import authenticates_itself
from vigie.audit.log import AuditUnavailable, record
from vigie.audit.refusals import THROTTLED
from vigie.intake.apikeys import Refusal, authenticate
from vigie.intake.models import ApiKey
from vigie.intake.rest import idempotency, metadata, problems, rounds
from vigie.intake.rest.openapi import schema
from vigie.intake.rest.problems import FieldError, ProblemType, problem
from vigie.intake.rest.uploads import MemoryOnlyUploadHandler
from vigie.records.batch import Arrival
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import ForeignSource, InvalidDocument, StorageUnavailable
from vigie.records.inspection import UPLOAD_TYPES as ACCEPTED_TYPES
from vigie.records.models import Document, PendingDocument
from vigie.records.receive import Received, Sender

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest], HttpResponse]

CHANNEL = "rest"
# One answer whether the document found its patient or waits for reconciliation:
# a key holder must not learn from it whether an INS or an IPP is known here.
RECEIVED_STATUS = 202
# Room for the multipart framing and the metadata part on top of the document itself.
MULTIPART_ALLOWANCE = metadata.MAX_METADATA_BYTES + 64 * 1024

_REFUSAL_DETAILS = {
    "missing": lambda: _("Send the API key in an Authorization: Bearer header."),
    "malformed": lambda: _("The API key is not in the form vk_<prefix>_<secret>."),
    "unknown": lambda: _("This API key is not valid: check that it was copied completely."),
    "revoked": lambda: _("This API key was revoked: ask the clinic for a new one."),
}


def _no_store(response: HttpResponse) -> HttpResponse:
    # Answers name document ids: no proxy or client cache should keep them.
    response["Cache-Control"] = "no-store"
    return response


def _refused(request: HttpRequest, refusal: Refusal) -> HttpResponse:
    """The key itself was refused (already audited, or counted, by `authenticate`)."""
    if refusal.reason == THROTTLED:
        return problem(
            request,
            problems.TOO_MANY_REFUSALS,
            _(
                "Too many requests without a valid API key came from this address; "
                "retry in %(seconds)s seconds."
            )
            % {"seconds": refusal.retry_after},
            headers={"Retry-After": str(refusal.retry_after)},
        )
    if refusal.reason == "network":
        return problem(
            request,
            problems.ADDRESS_NOT_ALLOWED,
            _("This API key is not allowed from this address; ask the clinic to add it."),
        )
    detail = _REFUSAL_DETAILS.get(refusal.reason, _REFUSAL_DETAILS["unknown"])()
    return problem(request, problems.UNAUTHORIZED, detail)


def _rejected(
    request: HttpRequest,
    key: ApiKey,
    kind: ProblemType,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """A problem after authentication: audited with the key's name, then answered."""
    record(
        "intake.rejected",
        request=request,
        outcome="failure" if kind.status >= 500 else "denied",
        reason=kind.slug,
        extra={
            "key": key.name,
            "channel": CHANNEL,
            "problem": kind.uri,
            "status": kind.status,
            "detail": str(detail)[:500],
        },
    )
    return problem(request, kind, detail, errors=errors, headers=headers)


def _guarded(view: View) -> View:
    """Fail closed: if an audit event cannot be written, nothing is stored or answered."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return _no_store(view(request))
        except AuditUnavailable:
            logger.exception("REST intake refused: audit log unavailable")
            return _no_store(
                problem(
                    request,
                    problems.AUDIT_UNAVAILABLE,
                    _("The reception could not be audited, so nothing was stored. Retry later."),
                )
            )

    return wrapper


@authenticates_itself
@csrf_exempt
@_guarded
def documents(request: HttpRequest) -> HttpResponse:
    """Receive one document with its metadata (see the OpenAPI document)."""
    limit: int = settings.VIGIE_MAX_DOCUMENT_SIZE
    key = admitted(
        request,
        # Room for the multipart framing and the metadata part: refused on the header alone.
        limit + MULTIPART_ALLOWANCE,
        lambda size: (
            _("The request declares %(size)s bytes; a document may have at most %(limit)s.")
            % {"size": size, "limit": limit}
        ),
    )
    if isinstance(key, HttpResponse):
        return key
    if request.content_type != "multipart/form-data":
        return _rejected(
            request,
            key,
            problems.UNSUPPORTED_MEDIA_TYPE,
            _("Send multipart/form-data with a 'file' part and a 'metadata' part (JSON)."),
        )
    try:
        idempotency_key = idempotency.key_from(request.headers)
    except idempotency.InvalidKey:
        return _rejected(
            request,
            key,
            problems.INVALID_IDEMPOTENCY_KEY,
            _("An Idempotency-Key is 1 to 255 printable ASCII characters (a UUID is ideal)."),
        )
    return _receive(request, key, idempotency_key, limit)


def admitted(
    request: HttpRequest, max_declared: int, too_large: Callable[[int], str]
) -> ApiKey | HttpResponse:
    """The preamble of every upload endpoint, before a byte of the body is read: who is
    asking (the API key: 401/403), what method (405), how big the body says it is (411,
    and 413 above `max_declared`, whose `detail` is `too_large(declared size)`). The key,
    or the problem to answer (already audited)."""
    key = authenticate(request)
    if isinstance(key, Refusal):
        return _refused(request, key)
    if request.method != "POST":
        return _rejected(
            request,
            key,
            problems.METHOD_NOT_ALLOWED,
            _("Only POST is accepted here: an API key can send documents, never read them."),
            headers={"Allow": "POST"},
        )
    declared = _declared_length(request)
    if declared is None:
        return _rejected(
            request,
            key,
            problems.LENGTH_REQUIRED,
            _("Send a Content-Length header; chunked uploads are not accepted."),
        )
    if declared > max_declared:
        return _rejected(request, key, problems.PAYLOAD_TOO_LARGE, too_large(declared))
    return key


def _declared_length(request: HttpRequest) -> int | None:
    raw = str(request.META.get("CONTENT_LENGTH") or "").strip()
    if not raw.isdigit():
        return None
    return int(raw)


def _receive(
    request: HttpRequest, key: ApiKey, idempotency_key: str | None, limit: int
) -> HttpResponse:
    # Each step answers the problem itself (audited by _rejected) or hands on what it read.
    parts = _read_parts(request, key, limit)
    if isinstance(parts, HttpResponse):
        return parts
    upload, text = parts
    parsed = _read_metadata(request, key, text)
    if isinstance(parsed, HttpResponse):
        return parsed
    meta, content_type = parsed
    data = upload.read()
    if idempotency_key is None:
        # Nothing to compare a retry with: no hash of the document (a SHA-256 of its bytes).
        return _store(request, key, None, "", meta, content_type, data)
    payload_hash = idempotency.request_hash(metadata.canonical(meta), data)
    earlier = idempotency.previous(key, idempotency_key, payload_hash)
    if earlier is not None:
        return _replay(request, key, idempotency_key, earlier)
    return _store(request, key, idempotency_key, payload_hash, meta, content_type, data)


def _read_parts(
    request: HttpRequest, key: ApiKey, limit: int
) -> tuple[UploadedFile, str] | HttpResponse:
    """The one 'file' part and the 'metadata' text, read into memory within `limit`."""
    handler = MemoryOnlyUploadHandler(request, limit)
    request.upload_handlers = [handler]
    try:
        files, fields = request.FILES, request.POST
    except RequestDataTooBig:
        return _rejected(
            request,
            key,
            problems.PAYLOAD_TOO_LARGE,
            _("The form fields are too large: send the document in the 'file' part."),
        )
    except (MultiPartParserError, TooManyFieldsSent, TooManyFilesSent, UnreadablePostError):
        return _rejected(
            request,
            key,
            problems.MALFORMED_REQUEST,
            _("The multipart body cannot be read (boundary, framing or an interrupted upload)."),
        )
    if handler.too_large:
        return _rejected(
            request,
            key,
            problems.PAYLOAD_TOO_LARGE,
            _("The document is larger than the limit of %(limit)s bytes.") % {"limit": limit},
        )
    missing: list[FieldError] = []
    uploads = files.getlist("file")
    if len(uploads) != 1:
        missing.append(
            {
                "pointer": "#/file",
                "detail": _("send exactly one 'file' part with the document")
                if uploads
                else _("the 'file' part (the document itself) is missing"),
            }
        )
    text = _metadata_text(fields, files)
    if text is None:
        missing.append(
            {"pointer": "#/metadata", "detail": _("the 'metadata' part (JSON) is missing")}
        )
    if missing or text is None:
        return _rejected(
            request,
            key,
            problems.MALFORMED_REQUEST,
            _("The request needs a 'file' part and a 'metadata' part."),
            errors=missing,
        )
    return uploads[0], text


def _read_metadata(
    request: HttpRequest, key: ApiKey, text: str
) -> tuple[metadata.Metadata, str] | HttpResponse:
    """The metadata, valid against the schema, and the document's accepted content type."""
    if len(text) > metadata.MAX_METADATA_BYTES:
        return _rejected(
            request,
            key,
            problems.MALFORMED_REQUEST,
            _("The metadata part is larger than %(limit)s bytes.")
            % {"limit": metadata.MAX_METADATA_BYTES},
        )
    try:
        meta = metadata.parse(text)
    except metadata.MalformedMetadata as exc:
        return _rejected(request, key, problems.MALFORMED_REQUEST, str(exc))
    except metadata.InvalidMetadata as exc:
        return _rejected(
            request,
            key,
            problems.INVALID_METADATA,
            _("The metadata does not follow the schema: see 'errors' for each field."),
            errors=exc.errors,
        )
    content_type = meta.document.content_type.split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        return _rejected(
            request,
            key,
            problems.UNSUPPORTED_MEDIA_TYPE,
            _("Documents of type %(type)s are not accepted; send one of %(accepted)s.")
            % {"type": content_type or "?", "accepted": ", ".join(sorted(ACCEPTED_TYPES))},
            errors=[{"pointer": "#/document/content_type", "detail": _("not an accepted type")}],
        )
    return meta, content_type


def _store(
    request: HttpRequest,
    key: ApiKey,
    idempotency_key: str | None,
    payload_hash: str,
    meta: metadata.Metadata,
    content_type: str,
    data: bytes,
) -> HttpResponse:
    """Receive the document for the key's source system and answer 202 with its receipt."""
    sender = Sender(
        ins=meta.patient.ins or None,
        ipp=meta.patient.ipp or None,
        ipp_source=meta.patient.ipp_source,
        family_name=meta.patient.family_name,
        given_names=meta.patient.given_names,
        birth_date=meta.patient.birth_date,
        sex=meta.patient.sex,
    )
    document_meta = DocumentMeta(
        kind=str(meta.document.kind.value),
        title=meta.document.title,
        clinical_date=meta.document.clinical_date,
        source_system=key.source_system,
        author=meta.document.author,
        content_type=content_type,
    )

    def within(row: Document | PendingDocument) -> None:
        body = _answer(row)
        if idempotency_key is not None:
            idempotency.remember(key, idempotency_key, payload_hash, RECEIVED_STATUS, body)
        record(
            "intake.received",
            request=request,
            document=row if isinstance(row, Document) else None,
            extra={
                "key": key.name,
                "channel": CHANNEL,
                "source_address": str(request.META.get("REMOTE_ADDR") or ""),
                # For the clinic (the audit trail), not for the sender's answer:
                "status": "stored" if isinstance(row, Document) else "to_reconcile",
                "document_id" if isinstance(row, Document) else "pending_id": str(row.pk),
                "idempotency_key": idempotency_key or "",
            },
        )

    try:
        # Committed with the uploads other threads of this process have ready at the same
        # moment: one transaction for all (rounds.py); the same outcome as receive().
        received = rounds.receive(Arrival(sender, document_meta, data, CHANNEL, within=within))
    except ForeignSource as exc:
        return _rejected(
            request,
            key,
            problems.FOREIGN_SOURCE,
            str(exc),
            errors=[{"pointer": "#/patient/ipp_source", "detail": _("not this key's system")}],
        )
    except InvalidDocument as exc:
        return _rejected(request, key, problems.INVALID_DOCUMENT, str(exc))
    except StorageUnavailable as exc:
        logger.error("REST intake: storage unavailable: %s", exc)
        return _rejected(
            request,
            key,
            problems.STORAGE_UNAVAILABLE,
            _("The document could not be stored, so nothing was kept. Retry later."),
        )
    except IntegrityError:
        return _after_conflict(request, key, idempotency_key, payload_hash)
    return JsonResponse(_answer_of(received), status=RECEIVED_STATUS)


def _metadata_text(fields: Any, files: Any) -> str | None:
    """The metadata as a form field, or as a file part (`curl -F metadata=@meta.json`)."""
    value = fields.get("metadata")
    if value is not None:
        return str(value)
    upload = files.get("metadata")
    if upload is None:
        return None
    raw = upload.read(metadata.MAX_METADATA_BYTES + 1)
    return bytes(raw).decode("utf-8", errors="replace")


def _answer(row: Document | PendingDocument) -> dict[str, Any]:
    # Only a receipt: never who the patient is, nor whether the identifiers designate
    # anyone here (a document and a pending one share their id space, and the id stays the
    # same once an administrator attaches it). The warnings depend on the file alone.
    return {
        "id": str(row.pk),
        "status": "received",
        "warnings": [str(w) for w in (row.content_warnings or [])],
    }


def _answer_of(received: Received) -> dict[str, Any]:
    row = received.document or received.pending
    if row is None:  # receive() always returns one of them
        raise AssertionError("receive() returned neither a document nor a pending document")
    return _answer(row)


def _replay(
    request: HttpRequest, key: ApiKey, idempotency_key: str, earlier: idempotency.Previous
) -> HttpResponse:
    if not earlier.same_payload:
        return _rejected(
            request,
            key,
            problems.IDEMPOTENCY_CONFLICT,
            _(
                "This Idempotency-Key was already used with another document or other "
                "metadata. Use a new key for each new document."
            ),
        )
    record(
        "intake.replayed",
        request=request,
        extra={
            "key": key.name,
            "channel": CHANNEL,
            "idempotency_key": idempotency_key,
            "id": str(earlier.body.get("id", "")),
        },
    )
    response = JsonResponse(earlier.body, status=earlier.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def _after_conflict(
    request: HttpRequest, key: ApiKey, idempotency_key: str | None, payload_hash: str
) -> HttpResponse:
    """Someone committed first: the same key in a concurrent request, most likely."""
    if idempotency_key is not None:
        earlier = idempotency.previous(key, idempotency_key, payload_hash)
        if earlier is not None:
            return _replay(request, key, idempotency_key, earlier)
    logger.exception("REST intake: integrity error without an idempotent answer")
    return _rejected(
        request,
        key,
        problems.CONFLICTING_RETRY,
        _("Another request stored the same data at the same moment; nothing was kept. Retry."),
    )


@authenticates_itself
@csrf_exempt
@_guarded
def openapi(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3.1 document, for holders of an API key (deny by default)."""
    key = authenticate(request)
    if isinstance(key, Refusal):
        return _refused(request, key)
    if request.method not in ("GET", "HEAD"):
        return _rejected(
            request,
            key,
            problems.METHOD_NOT_ALLOWED,
            _("The OpenAPI document is read with GET."),
            headers={"Allow": "GET, HEAD"},
        )
    record(
        "intake.openapi.read",
        request=request,
        extra={"key": key.name, "channel": CHANNEL},
    )
    return JsonResponse(schema(), json_dumps_params={"ensure_ascii": False})
