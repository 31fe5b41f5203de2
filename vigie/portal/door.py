"""THE one door for document bytes (DESIGN.md, invariants 2 and 3).

    access decision ─► audit event, committed ─► vault (first chunk authenticated) ─► stream

During a lockdown the access decision raises `LockedDown` before anything else, and the
door asks once more just before the vault: a lockdown engaged while this request was being
audited still stops its bytes.

Nothing else in Vigie turns a Document into plaintext for a user; `test_one_door` fails the
build if another module calls `stream_verified` or `vault.open`. The order is the point:
the audit event is durable before the first byte leaves, and a refused or unknown id gets
the same 404.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator
from typing import Literal

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from vigie.alerts.services import raise_alert
from vigie.audit import tags
from vigie.audit.log import AuditUnavailable, record
from vigie.portal.errors import RETRY_AFTER_SECONDS
from vigie.portal.scope import document_in_scope_or_404
from vigie.records.access import ensure_served
from vigie.records.content import StoreUnavailable, VaultError, stream_verified
from vigie.records.models import Document

logger = logging.getLogger(__name__)

DoorAction = Literal["view", "download"]

# Only types a browser renders without running our origin's scripts may be shown inline.
# Anything else (an HTML or SVG file sent by a misconfigured source system) is a download.
INLINE_SAFE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg"})

AUDIT_ACTIONS: dict[DoorAction, str] = {
    "view": tags.DOCUMENT_READ,
    "download": tags.DOCUMENT_DOWNLOAD,
}


def flagged_dangerous(document: Document) -> bool:
    """Intake's content check found active content (a PDF with JavaScript, launch actions or
    embedded files): served as an attachment only, never rendered inside the portal."""
    return document.active_content


def disposition_for(document: Document, action: DoorAction) -> Literal["inline", "attachment"]:
    inline = (
        action == "view"
        and document.content_type in INLINE_SAFE_TYPES
        and not flagged_dangerous(document)
    )
    return "inline" if inline else "attachment"


def download_name(document: Document) -> str:
    extension = mimetypes.guess_extension(document.content_type) or ".bin"
    stem = slugify(document.title)[:80] or "document"
    return f"{document.clinical_date:%Y-%m-%d}-{stem}{extension}"


def serve_document(
    request: HttpRequest, document_id: str, action: DoorAction
) -> HttpResponse | StreamingHttpResponse:
    document, decision = document_in_scope_or_404(request, document_id, action)
    # Raises AuditUnavailable if the event cannot be written: then nothing is opened.
    record(
        AUDIT_ACTIONS[action],
        request=request,
        patient=document.patient,
        document=document,
        extra={
            "basis": decision.reason,
            "basis_id": decision.basis_id,
            "emergency": decision.emergency,
        },
    )
    ensure_served()
    # No SHA-256 here: AES-GCM authenticates every chunk against this document's id and
    # position; fsck and backup verify keep checking the recorded hash.
    chunks = stream_verified(document, digest=False)
    try:
        # Pulling the first chunk runs vault.open(), which authenticates it: a wrong key, a
        # swapped or overwritten blob fails here, before any header or byte is sent.
        first = next(chunks, b"")
    except StoreUnavailable as exc:
        # The object store is slow or down: nothing was decrypted, nothing is sent, and the
        # document is not damaged (no integrity alert): 503, try again.
        return _store_unavailable(request, document, exc)
    except VaultError as exc:
        return _unreadable(request, document, exc)
    disposition = disposition_for(document, action)
    response = StreamingHttpResponse(
        _stream(document, first, chunks), content_type=document.content_type
    )
    response["Content-Length"] = str(document.size)
    response["Content-Disposition"] = (
        content_disposition_header(disposition == "attachment", download_name(document))
        or disposition
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def _stream(document: Document, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    except StoreUnavailable as exc:
        # The store stopped answering mid-document: the bytes sent were authentic; the
        # broken connection tells the browser the download is incomplete.
        logger.error("document %s: blob store failed mid-stream: %s", document.pk, exc)
        raise
    except VaultError as exc:
        # Damage past the first chunk shows only mid-stream. The bytes sent so far were
        # authentic; raising aborts the connection, so the browser sees a broken download
        # (Content-Length is not met) rather than a document that looks complete.
        _alert_unreadable(document, exc, mid_stream=True)
        raise


def _record_failure(request: HttpRequest, document: Document, exc: VaultError) -> None:
    try:
        record(
            "document.read.failed",
            request=request,
            patient=document.patient,
            document=document,
            outcome="failure",
            reason=type(exc).__name__,
        )
    except AuditUnavailable:
        logger.exception("could not audit the failed read of document %s", document.pk)


def _store_unavailable(
    request: HttpRequest, document: Document, exc: StoreUnavailable
) -> HttpResponse:
    logger.error("document %s: blob store unavailable: %s", document.pk, exc)
    _record_failure(request, document, exc)
    response = render(request, "portal/store_unavailable.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def _unreadable(request: HttpRequest, document: Document, exc: VaultError) -> HttpResponse:
    _alert_unreadable(document, exc, mid_stream=False)
    _record_failure(request, document, exc)
    response = render(
        request, "portal/document_unreadable.html", {"document": document}, status=500
    )
    response["Cache-Control"] = "no-store"
    return response


def _alert_unreadable(document: Document, exc: VaultError, *, mid_stream: bool) -> None:
    logger.error("document %s cannot be decrypted: %s", document.pk, exc)
    try:
        raise_alert(
            "vault.integrity",
            severity="critical",
            summary=f"Document {document.pk} cannot be decrypted ({type(exc).__name__})",
            details={
                "document_id": document.pk,
                "patient_ipp": document.patient.ipp,
                "patient_ref": document.patient.public_id,
                "error": type(exc).__name__,
                "message": str(exc),
                "mid_stream": mid_stream,
            },
            dedupe_key=f"vault.integrity:{document.pk}",
        )
    except Exception:
        # The error page and the log line must still happen if the alert channel is down.
        logger.exception("could not raise the alert for unreadable document %s", document.pk)
