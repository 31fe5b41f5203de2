"""A patient's page: identity header and document timeline."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vigie.audit.log import record
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.forms import timeline_form
from vigie.portal.inbox import unread_counts, with_read_state
from vigie.portal.scope import patient_in_scope_or_404
from vigie.portal.services import timeline
from vigie.records.models import Document


@require_GET
@never_cache
@fail_closed_without_audit
def patient_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    patient, decision = patient_in_scope_or_404(request, public_id, "list")
    form = timeline_form(request.GET)
    filters = form.filters()
    # The list of a patient's documents is itself a disclosure: recorded before it is shown.
    record(
        "patient.view",
        request=request,
        patient=patient,
        extra={"basis": decision.reason, "emergency": decision.emergency},
    )
    drawn_at = timezone.now()
    documents: list[Document] = (
        []  # a wrong filter lists nothing (its error says why)
        if filters is None
        else list(with_read_state(timeline(patient, filters), request.user))
    )
    return render(
        request,
        "portal/patient.html",
        {
            "patient": patient,
            "decision": decision,
            "form": form,
            "documents": documents,
            "unread": unread_counts(request.user, [patient]).get(patient.pk, 0),
            "drawn_at": drawn_at.isoformat(),
            # The viewer's previous/next follow this same list: its filter goes along.
            "list_query": request.GET.urlencode() if filters is not None else "",
        },
    )
