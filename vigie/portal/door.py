"""THE one door for document bytes (DESIGN.md, invariants 2 and 3).

    access decision ─► audit event, committed ─► vault (first chunk authenticated) ─► stream

During a lockdown the access decision raises `LockedDown` before anything else, and the
door asks once more just before the vault: a lockdown engaged while this request was being
audited still stops its bytes.

Nothing else in Vigie turns a Document into plaintext for a user; `test_one_door` fails the
build if another module calls `stream_verified`, `vault.open` or the lab results' openers
(`open_results`, `open_attachment`): a lab document's values are its content too, and go
through the same order (`lab_results`, `serve_results_pdf`, `serve_attachment`,
`patient_history`). The order is the point:
the audit event is durable before the first byte leaves, and a refused or unknown id gets
the same 404.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator
from typing import Literal

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from vigie.alerts.services import raise_alert
from vigie.audit import tags
from vigie.audit.log import AuditUnavailable, record, together
from vigie.portal.errors import RETRY_AFTER_SECONDS
from vigie.portal.scope import document_in_scope_or_404
from vigie.records.access import Decision, ensure_served
from vigie.records.content import StoreUnavailable, VaultError, stream_verified
from vigie.records.models import Document, Patient
from vigie.records.results import ResultSet, ResultsFormatError, highest_flag
from vigie.records.results_store import documents_with_results, open_attachment, open_results

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


# Types the standard library does not name.
_EXTENSIONS = {"application/hl7-v2": ".hl7", "application/x-hprim-sante": ".hpr"}


def download_name(document: Document, content_type: str | None = None) -> str:
    kind = content_type or document.content_type
    extension = _EXTENSIONS.get(kind) or mimetypes.guess_extension(kind) or ".bin"
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


def _record_failure(
    request: HttpRequest, document: Document, exc: VaultError | ResultsFormatError
) -> None:
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


def _unreadable(
    request: HttpRequest, document: Document, exc: VaultError | ResultsFormatError
) -> HttpResponse:
    _alert_unreadable(document, exc, mid_stream=False)
    _record_failure(request, document, exc)
    response = render(
        request, "portal/document_unreadable.html", {"document": document}, status=500
    )
    response["Cache-Control"] = "no-store"
    return response


def _alert_unreadable(
    document: Document, exc: VaultError | ResultsFormatError, *, mid_stream: bool
) -> None:
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


# --- lab results: the values are the document's content too --------------------------------


def _audit_read(
    request: HttpRequest,
    document: Document,
    decision: Decision,
    action: DoorAction,
    *,
    via: str = "",
) -> None:
    extra = {
        "basis": decision.reason,
        "basis_id": decision.basis_id,
        "emergency": decision.emergency,
        "part": "results",
    }
    if via:
        extra["via"] = via
    record(AUDIT_ACTIONS[action], request=request, patient=document.patient, document=document,
           extra=extra)  # fmt: skip


def lab_results(
    request: HttpRequest, document_id: str, action: DoorAction = "view"
) -> tuple[Document, Decision, ResultSet | None] | HttpResponse:
    """The document, the decision and its results, once the read is decided and audited;
    None when it carries no results (nothing decrypted, nothing audited: the viewer page
    of any other document discloses only what the timeline does). The unreadable page
    (500, alert) when they do not decrypt."""
    document, decision = document_in_scope_or_404(request, document_id, action)
    if not documents_with_results([document.pk]):
        return document, decision, None
    _audit_read(request, document, decision, action)
    ensure_served()
    try:
        return document, decision, open_results(document)
    except (VaultError, ResultsFormatError) as exc:
        return _unreadable(request, document, exc)


def serve_results_pdf(request: HttpRequest, document_id: str) -> HttpResponse | None:
    """A lab document's download: the PDF drawn from its values (None: it has none, serve
    its bytes as they are)."""
    found = lab_results(request, document_id, "download")
    if isinstance(found, HttpResponse):
        return found
    document, _decision, results = found
    if results is None:
        return None
    from vigie.portal.results_pdf import render_results  # reportlab: only when asked

    pdf = render_results(document, results)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = (
        content_disposition_header(True, download_name(document, "application/pdf")) or "attachment"
    )
    _private(response)
    return response


def serve_attachment(request: HttpRequest, document_id: str, action: DoorAction) -> HttpResponse:
    """The sender's own document embedded in a lab message (HL7 OBX type ED): decided,
    audited, decrypted, then shown inline (a PDF without active content) or downloaded.
    404 when there is none, as for an unknown id."""
    document, decision = document_in_scope_or_404(request, document_id, action)
    if not documents_with_results([document.pk]):
        raise Http404("")
    _audit_read(request, document, decision, action)
    ensure_served()
    try:
        found = open_attachment(document)
    except (VaultError, ResultsFormatError) as exc:
        return _unreadable(request, document, exc)
    if found is None:
        raise Http404("")
    content_type, data = found
    inline = (
        action == "view" and content_type in INLINE_SAFE_TYPES and not flagged_dangerous(document)
    )
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(
        not inline, download_name(document, content_type)
    ) or ("inline" if inline else "attachment")
    _private(response)
    return response


def patient_history(
    request: HttpRequest, patient: Patient, decision: Decision
) -> tuple[list[tuple[Document, ResultSet]], int]:
    """Every lab result set of `patient` (in scope: `decision` allowed it), newest first,
    and how many could not be read.

    Each document drawn from is audited as read, all in one transaction committed before
    anything is decrypted: the history discloses every value it shows. A result set that
    does not decrypt is left out and alerted (the page says how many), never a reason to
    show nothing of the rest.
    """
    documents = list(
        Document.objects.filter(patient=patient)
        .select_related("patient")
        .order_by("-clinical_date", "-received_at")
    )
    with_results = documents_with_results([d.pk for d in documents])
    documents = [d for d in documents if d.pk in with_results]
    if not documents:
        return [], 0
    with transaction.atomic(), together():
        for document in documents:
            _audit_read(request, document, decision, "view", via=tags.VIA_RESULTS_HISTORY)
    ensure_served()
    found = []
    for document in documents:
        try:
            results = open_results(document)
        except (VaultError, ResultsFormatError) as exc:
            _alert_unreadable(document, exc, mid_stream=False)
            continue
        if results is not None:
            found.append((document, results))
    return found, len(documents) - len(found)


def inbox_listing(request: HttpRequest, documents: list[Document], page: int) -> dict[str, str]:
    """Record the inbox page's disclosure, then read the flags of its lab documents:
    document id → "critical" / "abnormal" (absent: no flagged value, or no results).

    The documents come from `inbox.unread`, i.e. from the access rule's own scope (the
    decision for listing). A marker derived from the values discloses them in part, so it
    goes through the door's order: one `inbox.view` per patient on the page, whose extra
    names the documents whose flags were read (`flags_read`), all committed in one append
    BEFORE anything is decrypted. Raises AuditUnavailable if that append fails: the caller
    answers 503 and shows neither the list nor any flag. Not a `document.read`: showing a
    marker must not count as opening the document (the inbox's read state is derived from
    those events). Only the page's documents are opened, one sealed row each.
    """
    with_results = documents_with_results([d.pk for d in documents])
    shown: dict[int, list[Document]] = {}
    for document in documents:
        shown.setdefault(document.patient_id, []).append(document)
    with transaction.atomic(), together():
        for listed in shown.values():
            extra: dict[str, object] = {"documents": len(listed), "page": page}
            flagged = [d.pk for d in listed if d.pk in with_results]
            if flagged:
                extra["flags_read"] = flagged
            record("inbox.view", request=request, patient=listed[0].patient, extra=extra)
    if not with_results:
        return {}
    ensure_served()
    markers: dict[str, str] = {}
    for document in documents:
        if document.pk not in with_results:
            continue
        try:
            results = open_results(document)
        except (VaultError, ResultsFormatError) as exc:
            # Damage: alerted, and the document stays listed (opening it shows the error).
            _alert_unreadable(document, exc, mid_stream=False)
            continue
        marker = highest_flag(results) if results is not None else ""
        if marker:
            markers[document.pk] = marker
    return markers


def _private(response: HttpResponse) -> None:
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
