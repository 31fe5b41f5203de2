"""The viewer page, and the two doors to a document's bytes (inline and download)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from csp.decorators import csp_replace
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from vigie.portal.door import disposition_for, lab_results, serve_document, serve_results_pdf
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.forms import timeline_form
from vigie.portal.services import Neighbours, neighbours
from vigie.records.results import highest_flag

View = TypeVar("View", bound=Callable[..., HttpResponseBase])

# django-csp types its decorators for views without URL arguments; these are the same
# decorators, typed for ours.
_frame_by_self_only = cast(Callable[[View], View], csp_replace({"frame-ancestors": ["'self'"]}))


@require_GET
@never_cache
@fail_closed_without_audit
def document_viewer(request: HttpRequest, doc_id: str) -> HttpResponse:
    # A lab document's values are shown in the page: read through the door (decided,
    # audited, then decrypted). Any other document's page shows its metadata only.
    found = lab_results(request, doc_id, "view")
    if isinstance(found, HttpResponse):
        return found
    document, decision, results = found
    # The values are on this page already (read and audited above): the marker costs nothing.
    document.result_marker = highest_flag(results) if results is not None else ""  # type: ignore[attr-defined]
    # The list the doctor came from (the timeline's filter and order travel in the query
    # string), so that previous and next walk that list and no other.
    filters = timeline_form(request.GET).filters()
    around = neighbours(document, filters) if filters is not None else Neighbours()
    list_query = request.GET.urlencode() if filters is not None else ""
    return render(
        request,
        "portal/document.html",
        {
            "document": document,
            "patient": document.patient,
            "decision": decision,
            "inline": disposition_for(document, "view") == "inline",
            "results": results,
            "around": around,
            "list_query": list_query,
        },
    )


@require_GET
@fail_closed_without_audit
@xframe_options_sameorigin
@_frame_by_self_only
def document_content(request: HttpRequest, doc_id: str) -> HttpResponse | StreamingHttpResponse:
    # Framed by the viewer page of this same site only; every other page stays DENY.
    return serve_document(request, doc_id, "view")


@require_GET
@fail_closed_without_audit
def document_download(request: HttpRequest, doc_id: str) -> HttpResponse | StreamingHttpResponse:
    # A lab document downloads as the PDF drawn from its values; anything else as stored.
    return serve_results_pdf(request, doc_id) or serve_document(request, doc_id, "download")
