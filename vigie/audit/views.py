"""Reports for the data protection officer. Every view is for role `auditor` only: anyone
else gets 404, as if the pages did not exist. Reading a report is itself audited."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from vigie.alerts.models import Alert
from vigie.audit import reports, tags
from vigie.audit.log import record
from vigie.audit.models import AuditEvent
from vigie.audit.refusals import weight

_REPORT_LIMIT = 2000


def _auditor_or_404(request: HttpRequest) -> None:
    user = request.user
    if not user.is_authenticated or getattr(user, "role", None) != "auditor":
        raise Http404


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    _auditor_or_404(request)
    since = timezone.now() - timedelta(days=14)
    reads = AuditEvent.objects.filter(
        at__gte=since, action__in=(tags.DOCUMENT_READ, tags.DOCUMENT_DOWNLOAD)
    )
    per_day = list(
        reads.annotate(day=TruncDate("at")).values("day").annotate(n=Count("seq")).order_by("day")
    )
    peak = max((row["n"] for row in per_day), default=0)
    top_actors = list(
        reads.values("actor_username", "actor_display")
        .annotate(patients=Count("patient_id", distinct=True), reads=Count("seq"))
        .order_by("-patients")[:10]
    )
    # Counts say what they name: an event of counted refusals stands for its count, and one
    # emergency access is its one grant (not its lookup, its refusals or its alert).
    denied = sum(
        weight(extra)
        for extra in AuditEvent.objects.filter(at__gte=since, outcome="denied").values_list(
            "extra", flat=True
        )
    )
    emergencies = AuditEvent.objects.filter(
        at__gte=since, action=tags.EMERGENCY_GRANT, outcome="success"
    ).count()
    alerts = Alert.objects.filter(acknowledged_at__isnull=True, audience="auditor")[:20]
    record("audit.dashboard.view", request=request)
    return render(
        request,
        "audit/dashboard.html",
        {
            "per_day": per_day,
            "peak": peak,
            "top_actors": top_actors,
            "denied": denied,
            "emergencies": emergencies,
            "alerts": alerts,
        },
    )


def _export(
    request: HttpRequest, name: str, title: str, events: list[AuditEvent]
) -> HttpResponseBase | None:
    kind = request.GET.get("format", "html")
    if kind == "csv":
        response = StreamingHttpResponse(reports.csv_rows(events), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return response
    if kind == "fhir":
        response = StreamingHttpResponse(
            reports.fhir_ndjson(events), content_type="application/fhir+ndjson"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}.ndjson"'
        return response
    if kind == "pdf":
        pdf = HttpResponse(reports.pdf_report(title, events), content_type="application/pdf")
        pdf["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return pdf
    return None


def _report(
    request: HttpRequest, name: str, title: str, events: list[AuditEvent], *, subject: str
) -> HttpResponseBase:
    """The report as the export asked for (`?format=`), or as the HTML page."""
    exported = _export(request, name, title, events)
    if exported is not None:
        return exported
    return render(
        request,
        "audit/report.html",
        {"title": title, "events": events, "limit": _REPORT_LIMIT, "subject": subject},
    )


@require_GET
def patient_report(request: HttpRequest, ipp: str) -> HttpResponseBase:
    _auditor_or_404(request)
    events = list(reports.patient_events(ipp)[:_REPORT_LIMIT])
    record(
        "audit.report.patient",
        request=request,
        extra={"patient_ipp": ipp, "format": request.GET.get("format", "html")},
    )
    title = _("Access to the records of patient %(ipp)s") % {"ipp": ipp}
    return _report(request, f"acces-{ipp}", title, events, subject="patient")


@require_GET
def actor_report(request: HttpRequest, username: str) -> HttpResponseBase:
    _auditor_or_404(request)
    events = list(reports.actor_events(username)[:_REPORT_LIMIT])
    record(
        "audit.report.actor",
        request=request,
        extra={"actor_username": username, "format": request.GET.get("format", "html")},
    )
    title = _("Activity of %(user)s") % {"user": username}
    return _report(request, f"activite-{username}", title, events, subject="actor")
