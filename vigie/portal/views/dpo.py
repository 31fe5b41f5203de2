"""The data protection officer's pages in the portal: a home with their tools, and the
searches that lead to the audit reports (by patient, by user) without typing a URL.

Role `auditor` only; anyone else gets 404, like the audit pages themselves. The DPO audits
every patient's record, so the patient search is not bounded by a care scope; it shows
identity only (name, birth date, IPP) and links to the access report, never to a record,
and each search is itself audited. The reports stay in the audit app.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from vigie.accounts.models import Role, User
from vigie.alerts.models import Alert, Audience
from vigie.audit import tags
from vigie.audit.log import record
from vigie.audit.models import AuditEvent
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.services import PAGE_SIZE, matching_patients
from vigie.records.models import Patient


class ReportSearchForm(forms.Form):
    q = forms.CharField(
        label=_("Name, IPP, INS or birth date"),
        max_length=150,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )


class ActorSearchForm(forms.Form):
    q = forms.CharField(
        label=_("Name or identifier of the user"),
        max_length=150,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )


def _auditor_or_404(request: HttpRequest) -> None:
    if getattr(request.user, "role", None) != Role.AUDITOR:
        raise Http404


def home(request: HttpRequest) -> HttpResponse:
    """The DPO's home (the portal's home page, for role auditor)."""
    _auditor_or_404(request)
    since = timezone.now() - timedelta(days=14)
    open_alerts = Alert.objects.filter(audience=Audience.AUDITOR, acknowledged_at__isnull=True)
    context = {
        "patient_form": ReportSearchForm(auto_id="patient-%s"),
        "actor_form": ActorSearchForm(auto_id="actor-%s"),
        "open_alert_count": open_alerts.count(),
        "latest_alerts": list(open_alerts[:5]),
        "emergencies": AuditEvent.objects.filter(
            at__gte=since, action=tags.EMERGENCY_GRANT, outcome="success"
        ).count(),
    }
    return render(request, "portal/dpo_home.html", context)


@require_GET
@never_cache
@fail_closed_without_audit
def patient_search(request: HttpRequest) -> HttpResponse:
    _auditor_or_404(request)
    form = ReportSearchForm(request.GET or None, auto_id="patient-%s")
    page = None
    if form.is_bound and form.is_valid():
        patients = matching_patients(Patient.objects.all(), q=form.cleaned_data["q"])
        page = Paginator(patients, PAGE_SIZE).get_page(request.GET.get("page"))
        # Who looked for which patients is part of the trail, the DPO's searches included.
        record(
            "audit.patient_search",
            request=request,
            extra={"query": form.cleaned_data["q"][:150], "results": page.paginator.count},
        )
    return render(request, "portal/dpo_patients.html", {"form": form, "page": page})


@require_GET
@never_cache
def actor_search(request: HttpRequest) -> HttpResponse:
    _auditor_or_404(request)
    form = ActorSearchForm(request.GET or None, auto_id="actor-%s")
    users: list[User] = []
    if form.is_bound and form.is_valid():
        words = form.cleaned_data["q"].split()
        found = User.objects.all()
        for word in words:
            found = found.filter(
                Q(username__icontains=word)
                | Q(first_name__icontains=word)
                | Q(last_name__icontains=word)
            )
        users = list(found.order_by("last_name", "first_name", "username")[:PAGE_SIZE])
    return render(request, "portal/dpo_actors.html", {"form": form, "users": users})
