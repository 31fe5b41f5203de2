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
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=landscape(A4), title=title)
    styles = getSampleStyleSheet()
    rows: list[list[str]] = [
        ["#", "Date (UTC)", "Action", "Résultat", "Qui", "Rôle", "Document", "Adresse"]
    ]
    for event in events:
        rows.append(
            [
                str(event.seq),
                event.at.strftime("%Y-%m-%d %H:%M:%S"),
                event.action,
                event.outcome,
                event.actor_display or event.actor_username,
                event.actor_role,
                event.document_id[:16],
                event.source_ip,
            ]
        )
    table = Table(rows, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ]
        )
    )
    document.build([Paragraph(title, styles["Title"]), table])
    return buffer.getvalue()
