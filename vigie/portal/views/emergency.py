"""Break-the-glass: exact lookup, then a justified, second-factor-confirmed grant.

The patient found by the lookup is kept in the session, not in a URL or a hidden field, so
the grant form can only ever be for a patient this session found by exact identifier.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from vigie.accounts.models import Role, User
from vigie.audit.log import record
from vigie.portal.emergency import (
    SecondFactorRefused,
    find_patient_by_identifiers,
    grant_emergency_access,
)
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.forms import EmergencyGrantForm, EmergencyLookupForm
from vigie.records.access import decide, ensure_served
from vigie.records.models import Patient

CANDIDATE_KEY = "vigie_emergency_candidate"
# The found patient stays selectable this long: enough to fill in the form, no more.
CANDIDATE_TTL_SECONDS = 600


def _doctor(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or user.role != Role.DOCTOR or not user.is_active:
        raise PermissionDenied
    # During a lockdown the doctor gets the maintenance page at once, not a form whose
    # answer (or the candidate kept in the session) would name a patient.
    ensure_served()
    return user


def _candidate(request: HttpRequest) -> Patient | None:
    stored = request.session.get(CANDIDATE_KEY)
    if not isinstance(stored, dict):
        return None
    patient_pk, found_at = stored.get("patient"), stored.get("at")
    if not isinstance(patient_pk, int) or not isinstance(found_at, int | float):
        return None
    if time.time() - found_at > CANDIDATE_TTL_SECONDS:
        return None
    return Patient.objects.filter(pk=patient_pk).first()


@require_http_methods(["GET", "POST"])
@never_cache
@fail_closed_without_audit
def emergency_lookup(request: HttpRequest) -> HttpResponse:
    doctor = _doctor(request)
    form = EmergencyLookupForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        patient = find_patient_by_identifiers(
            ins=data["ins"], ipp=data["ipp"], birth_date=data["birth_date"]
        )
        record(
            "emergency.lookup",
            request=request,
            patient=patient,
            outcome="success" if patient else "failure",
            reason="found" if patient else "not_found",
            extra={"by": "ins" if data["ins"] else "ipp_and_birth_date"},
        )
        if patient is None:
            # One answer for "unknown" and "identifiers that disagree": no oracle.
            form.add_error(None, _("No patient matches these identifiers."))
        elif decide(doctor, "view", patient=patient).allowed:
            return redirect("portal:patient_detail", public_id=patient.public_id)
        else:
            request.session[CANDIDATE_KEY] = {"patient": patient.pk, "at": time.time()}
            return redirect("portal:emergency_grant")
    return render(request, "portal/emergency_lookup.html", {"form": form})


@require_http_methods(["GET", "POST"])
@never_cache
@fail_closed_without_audit
def emergency_grant(request: HttpRequest) -> HttpResponse | HttpResponseRedirect:
    doctor = _doctor(request)
    patient = _candidate(request)
    if patient is None:
        return redirect("portal:emergency_lookup")
    form = EmergencyGrantForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            grant = grant_emergency_access(
                request,
                doctor,
                patient,
                reason=form.cleaned_data["reason"],
                justification=form.cleaned_data["justification"],
                code=form.cleaned_data["code"],
            )
        except SecondFactorRefused:
            form.add_error("code", _("This code is not valid."))
        else:
            request.session.pop(CANDIDATE_KEY, None)
            messages.warning(
                request,
                _("Emergency access granted. It is recorded and reviewed by the auditor."),
            )
            return redirect("portal:patient_detail", public_id=grant.patient.public_id)
    return render(request, "portal/emergency_grant.html", {"form": form, "patient": patient})
