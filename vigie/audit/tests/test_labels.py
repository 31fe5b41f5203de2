"""Codes nowhere: every audit tag the code records has a label, and the pages and the PDF a
French DPO reads show labels, local times and the emergency justification, never codes."""

from __future__ import annotations

import ast
import html
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import translation
from django.utils.formats import date_format
from pypdf import PdfReader

from vigie.accounts import events
from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.audit import labels, reports, tags
from vigie.audit.log import _build, append_batch, record
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PACKAGE = Path(__file__).resolve().parents[2]
# Tags of events recorded through variables the walk below cannot follow, named here.
# (`VIA_*` constants are values of an event's `extra["via"]`, not actions.)
_RECORDED_INDIRECTLY = {
    value
    for module in (events, tags)
    for name, value in vars(module).items()
    if name.isupper() and not name.startswith("VIA_") and isinstance(value, str)
}


def _recorded_tags() -> set[str]:
    """Every literal tag passed to record()/audit() in the production code."""
    found = set(_RECORDED_INDIRECTLY)
    for path in PACKAGE.rglob("*.py"):
        if "tests" in path.parts or "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) else None
            tag_shaped = isinstance(literal, str) and re.fullmatch(
                r"[a-z_]+(\.[a-z_]+)+|logout", literal
            )
            if name in {"record", "audit"} and tag_shaped:
                found.add(str(literal))
    return found


def test_every_recorded_tag_has_a_label() -> None:
    tags = _recorded_tags()
    assert "document.read" in tags
    assert "emergency.lookup" in tags  # the walk sees the code
    with translation.override("fr"):
        unlabelled = sorted(t for t in tags if labels.action_label(t).startswith("Autre"))
    assert unlabelled == []


def test_labels_are_french_for_a_french_reader() -> None:
    with translation.override("fr"):
        assert labels.action_label("document.read") == "Lecture d'un document"
        assert labels.action_label("intake.document.stored") == "Document reçu"
        assert labels.action_label("admin.records.patient.view") == (
            "Administration : patients — fiche ouverte"
        )
        assert labels.role_label("auditor") == "DPO (délégué à la protection des données)"
        assert labels.reason_label("no_relationship") == "Patient non pris en charge par le médecin"
        # Free text (a justification) is shown as written.
        assert labels.reason_label("Patient inconscient") == "Patient inconscient"


def test_english_dates_are_day_first() -> None:
    moment = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
    with translation.override("en"):
        assert date_format(moment, "SHORT_DATE_FORMAT") == "4 Mar 2026"
    with translation.override("fr"):
        assert date_format(moment, "SHORT_DATE_FORMAT") == "04/03/2026"


@pytest.fixture
def dpo() -> Client:
    client = Client()
    log_in(client, make_user("dpo", role=Role.AUDITOR))
    return client


@pytest.fixture
def trail() -> None:
    doctor = make_user("dr.lefebvre", role=Role.DOCTOR, first_name="Anne", last_name="Lefebvre")
    for action, outcome, reason in [
        ("document.read", "success", "care_relationship"),
        ("document.read.denied", "denied", "no_relationship"),
        ("patient.view", "success", ""),
        ("emergency.lookup", "failure", "not_found"),
    ]:
        event = _build(
            action,
            request=None,
            actor=doctor,
            patient=None,
            document=None,
            outcome=outcome,
            reason=reason,
            extra=None,
        )
        event.patient_ipp = "IPP0000042"
        append_batch([event])
    grant = _build(
        "emergency.grant",
        request=None,
        actor=doctor,
        patient=None,
        document=None,
        outcome="success",
        reason="Arrêt cardiaque aux urgences, dossier nécessaire",
        extra={"emergency_reason": "vital_emergency"},
    )
    grant.patient_ipp = "IPP0000042"
    append_batch([grant])
    record("login.success", actor=doctor)


def _paris_time_of(action: str) -> str:
    at = AuditEvent.objects.get(action=action).at.astimezone(ZoneInfo("Europe/Paris"))
    return at.strftime("%d/%m/%Y %H:%M:%S")


# What must never reach a French reader's screen: tags, outcomes, roles, reason codes.
RAW_CODES = [
    "document.read",
    "document.read.denied",
    "patient.view",
    "emergency.grant",
    "emergency.lookup",
    ">success<",
    ">denied<",
    ">failure<",
    "(doctor)",
    "no_relationship",
    "care_relationship",
    "vital_emergency",
    "not_found",
    "login.success",
]


@pytest.mark.parametrize(
    "url", ["/audit/patients/IPP0000042/", "/audit/actors/dr.lefebvre/", "/audit/"]
)
def test_no_raw_code_on_the_audit_pages(dpo: Client, trail: None, url: str) -> None:
    page = dpo.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    shown = html.unescape(re.sub(r'<[^>]*(href|action|value|class|id)="[^"]*"[^>]*>', "<>", page))
    leaked = [code for code in RAW_CODES if code in shown]
    assert leaked == []


def test_the_report_reads_in_french_with_local_times(dpo: Client, trail: None) -> None:
    page = html.unescape(dpo.get("/audit/patients/IPP0000042/").content.decode())
    for words in [
        "Lecture d'un document",
        "Lecture d'un document refusée",
        "Refusé",
        "Médecin",
        "Patient non pris en charge par le médecin",
        "Urgence vitale",
        "Arrêt cardiaque aux urgences",
        "Europe/Paris",
    ]:
        assert words in page, words
    assert _paris_time_of("emergency.grant") in page  # Paris time, French order


def test_the_pdf_export_is_in_french_with_the_emergency_justification(
    dpo: Client, trail: None
) -> None:
    response = dpo.get("/audit/patients/IPP0000042/?format=pdf")
    assert response["Content-Type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    text = re.sub(r"\s+", " ", text)
    for words in [
        "Accès au dossier du patient IPP0000042",
        "Date (Europe/Paris)",
        "Motif ou justification",
        "Lecture d'un document",
        "Urgence vitale",
        "Arrêt cardiaque",
        _paris_time_of("emergency.grant"),
        "Médecin",
    ]:
        assert words in text, words
    for code in ["document.read", "emergency.grant", "vital_emergency", "UTC", "success"]:
        assert code not in text, code


def test_the_machine_exports_keep_the_codes(dpo: Client, trail: None) -> None:
    body = dpo.get("/audit/patients/IPP0000042/?format=csv").getvalue().decode()
    assert "document.read" in body
    assert "emergency.grant" in body
    assert reports.CSV_COLUMNS[2] == "action"


@pytest.fixture
def alerts() -> None:
    from vigie.alerts.services import raise_alert

    raise_alert(
        "emergency.access",
        severity="warning",
        summary="Emergency access by dr.lefebvre to patient abc until 2026-01-16 04:30 UTC",
        details={
            "doctor": "dr.lefebvre",
            "patient_ipp": "IPP0000042",
            "expires_at": "2026-01-16T04:30:00+00:00",
        },
        dedupe_key="emergency.access:1",
    )
    raise_alert(
        "access.many_patients",
        severity="warning",
        summary="dr.lefebvre opened records of 25 patients in 10 minutes",
        details={"actor_id": 1, "actor": "dr.lefebvre", "patients": 25},
        dedupe_key="many-patients:1",
    )


@pytest.mark.parametrize("url", ["/", "/alerts/", "/audit/"])
def test_no_raw_code_in_the_dpos_alerts(dpo: Client, alerts: None, url: str) -> None:
    page = html.unescape(dpo.get(url).content.decode())
    shown = re.sub(r"<[^>]*>", " ", page)
    for code in ["emergency.access", "access.many_patients", "warning", "UTC", "opened records of"]:
        assert code not in shown, code
    # Local time, French order: 04:30 UTC is 05:30 in Paris in January.
    assert (
        "Accès d'urgence de dr.lefebvre au patient IPP0000042, jusqu'au 16/01/2026 05:30" in shown
    )
