"""Who saw what: report rows, CSV, FHIR R4 AuditEvent NDJSON and PDF renderings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet

from vigie.audit import tags
from vigie.audit.models import AuditEvent

CSV_COLUMNS = (
    "seq",
    "at",
    "action",
    "outcome",
    "actor_username",
    "actor_role",
    "actor_display",
    "patient_ipp",
    "document_id",
    "source_ip",
    "user_agent",
    "request_id",
    "reason",
)

# DICOM audit event types (used by FHIR AuditEvent.type) and FHIR action codes.
_FHIR_TYPE = {
    "system": "http://dicom.nema.org/resources/ontology/DCM",
    "code": "110110",
    "display": "Patient Record",
}
_FHIR_OUTCOME = {"success": "0", "denied": "4", "failure": "8"}


def patient_events(ipp: str) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(patient_ipp=ipp).order_by("seq")


def actor_events(username: str) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(actor_username=username).order_by("seq")


def _csv_safe(value: object) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: neutralise it (CSV injection).
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(events: Iterable[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        writer.writerow(
            [
                _csv_safe(event.at.isoformat() if c == "at" else getattr(event, c))
                for c in CSV_COLUMNS
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def fhir_audit_event(event: AuditEvent) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "who": {"identifier": {"system": "urn:vigie:username", "value": event.actor_username}},
        "requestor": True,
    }
    if event.actor_display:
        agent["who"]["display"] = event.actor_display
    if event.source_ip:
        agent["network"] = {"address": event.source_ip, "type": "2"}
    entities: list[dict[str, Any]] = []
    if event.patient_ipp:
        entities.append(
            {"what": {"identifier": {"system": "urn:vigie:ipp", "value": event.patient_ipp}}}
        )
    if event.document_id:
        entities.append(
            {"what": {"identifier": {"system": "urn:vigie:document", "value": event.document_id}}}
        )
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"vigie-{event.seq}",
        "type": _FHIR_TYPE,
        "subtype": [{"system": "urn:vigie:action", "code": event.action}],
        # "Marked as read" changes the doctor's read state; it discloses nothing: not an R.
        "action": "R"
        if event.action.startswith("document.") and event.action != tags.DOCUMENT_MARKED_READ
        else "E",
        "recorded": event.at.isoformat(),
        "outcome": _FHIR_OUTCOME.get(event.outcome, "8"),
        "agent": [agent],
        "source": {"observer": {"display": "Vigie"}},
    }
    if event.reason:
        resource["outcomeDesc"] = event.reason
    if entities:
        resource["entity"] = entities
    return resource


def fhir_ndjson(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(fhir_audit_event(event), ensure_ascii=False) + "\n"


def pdf_report(title: str, events: Iterable[AuditEvent]) -> bytes:
    """The report for people: labels in the reader's language (the active translation), times
    in the clinic's zone (VIGIE_TIME_ZONE, named in the header), and the emergency reason and
    justification a DPO reviews. Codes stay in the CSV and FHIR exports, for machines."""
    from django.utils import timezone
    from django.utils.formats import date_format
    from django.utils.translation import gettext as _
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    from vigie.audit.labels import action_label, emergency_reason, reason_label, role_label

    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=landscape(A4), title=title)
    styles = getSampleStyleSheet()
    cell = styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
    zone = timezone.get_current_timezone_name()
    header = [
        "#",
        _("Date (%(zone)s)") % {"zone": zone},
        _("Event"),
        _("Outcome"),
        _("Who"),
        _("Role"),
        _("Patient"),
        _("Document"),
        _("From"),
        _("Reason or justification"),
    ]
    rows: list[list[Any]] = [header]
    for event in events:
        local = timezone.localtime(event.at)
        chosen = emergency_reason(event.extra)
        reason = reason_label(event.reason)
        rows.append(
            [
                str(event.seq),
                f"{date_format(local, 'SHORT_DATE_FORMAT')} {local:%H:%M:%S}",
                Paragraph(_escape(action_label(event.action)), cell),
                event.get_outcome_display(),
                Paragraph(_escape(event.actor_display or event.actor_username), cell),
                Paragraph(_escape(role_label(event.actor_role)), cell),
                event.patient_ipp,
                event.document_id[:16],
                event.source_ip,
                Paragraph(_escape(f"{chosen} — {reason}" if chosen else reason), cell),
            ]
        )
    table = Table(rows, repeatRows=1, colWidths=[32, 78, 110, 48, 90, 70, 62, 70, 62, 170])
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 7),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ]
        )
    )
    document.build([Paragraph(_escape(title), styles["Title"]), table])
    return buffer.getvalue()


def _escape(text: str) -> str:
    # reportlab's Paragraph reads a little markup: a name or a justification is text only.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
