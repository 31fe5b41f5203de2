"""A patient's page: identity header and document timeline."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vigie.audit.log import record
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.forms import TimelineFilterForm
from vigie.portal.scope import patient_in_scope_or_404
from vigie.portal.services import TimelineFilter, record_visit, timeline


@require_GET
@never_cache
@fail_closed_without_audit
def patient_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    patient, decision = patient_in_scope_or_404(request, public_id, "list")
    form = TimelineFilterForm(request.GET or None)
    filters = TimelineFilter(**form.cleaned_data) if form.is_bound and form.is_valid() else None
    # The list of a patient's documents is itself a disclosure: recorded before it is shown.
    record(
        "patient.view",
        request=request,
        patient=patient,
        extra={"basis": decision.reason, "emergency": decision.emergency},
    )
    previous_visit = record_visit(request.user, patient)  # type: ignore[arg-type]
    return render(
        request,
        "portal/patient.html",
        {
            "patient": patient,
            "decision": decision,
            "form": form,
            "documents": timeline(patient, filters or TimelineFilter()),
            "previous_visit": previous_visit,
        },
    )
