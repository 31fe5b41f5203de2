"""Home: the doctor's patients, and a search that never leaves the doctor's scope."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vigie.accounts.models import Role
from vigie.portal.forms import PatientSearchForm
from vigie.portal.inbox import unread_counts
from vigie.portal.services import PAGE_SIZE, emergency_expiries, search_patients
from vigie.portal.views import dpo


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    if getattr(request.user, "role", None) == Role.AUDITOR:
        return dpo.home(request)
    if getattr(request.user, "role", None) != Role.DOCTOR:
        # IT and the auditor have no patients: say where their work is instead.
        return render(request, "portal/home_not_doctor.html")
    form = PatientSearchForm(request.GET or None)
    searching = form.is_bound and form.is_valid()
    criteria = form.cleaned_data if searching else {}
    patients = search_patients(
        request.user, q=criteria.get("q") or "", birth_date=criteria.get("birth_date")
    )
    # get_page(): a page number out of range or not a number shows the nearest page.
    page = Paginator(patients, PAGE_SIZE).get_page(request.GET.get("page"))
    expiries = emergency_expiries(request.user)
    patients_here = list(page)
    # Every patient's count in one pass: the page's rows and the header's total both.
    unread = unread_counts(request.user)
    rows = [
        (patient, expiries.get(patient.pk), unread.get(patient.pk, 0)) for patient in patients_here
    ]
    # The links to other pages keep the search.
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(
        request,
        "portal/home.html",
        {
            "form": form,
            "searching": searching,
            "rows": rows,
            "page": page,
            "query_string": kept.urlencode(),
            "unread_total": sum(unread.values()),
        },
    )
