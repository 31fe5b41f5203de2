"""Lab results: a patient's history of every analyte, and a lab message's embedded PDF.

The table of one lab document is part of its viewer (`documents.document_viewer`); its PDF
is its download. Every value shown here left the vault through the door.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from vigie.audit.log import record
from vigie.portal.door import patient_history, serve_attachment
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.lab_history import build_history
from vigie.portal.scope import patient_in_scope_or_404
from vigie.portal.views.documents import _frame_by_self_only


@require_GET
@never_cache
@fail_closed_without_audit
def patient_results(request: HttpRequest, public_id: str) -> HttpResponse:
    patient, decision = patient_in_scope_or_404(request, public_id, "view")
    # The page names the patient even when it has no values to show: recorded as the
    # patient's page is, before anything is shown.
    record(
        "patient.view",
        request=request,
        patient=patient,
        extra={"basis": decision.reason, "emergency": decision.emergency, "page": "results"},
    )
    found, unreadable = patient_history(request, patient, decision)
    return render(
        request,
        "portal/results_history.html",
        {
            "patient": patient,
            "decision": decision,
            "history": build_history(found),
            "unreadable": unreadable,
        },
    )


@require_GET
@fail_closed_without_audit
@xframe_options_sameorigin
@_frame_by_self_only
def document_attachment(request: HttpRequest, doc_id: str) -> HttpResponse:
    # Framed by the viewer page of this same site only, as the document's own content is.
    return serve_attachment(request, doc_id, "view")


@require_GET
@fail_closed_without_audit
def document_attachment_download(request: HttpRequest, doc_id: str) -> HttpResponse:
    return serve_attachment(request, doc_id, "download")
