from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from vigie.accounts.models import Role, User
from vigie.accounts.testing import log_in, make_user
from vigie.audit.log import record
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

URLS = ["/audit/", "/audit/patients/IPP0000042/", "/audit/actors/dr.house/"]


@pytest.fixture(autouse=True)
def _http(settings) -> None:
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def dpo_client() -> Client:
    client = Client()
    log_in(client, make_user("dpo", role=Role.AUDITOR))
    return client


@pytest.fixture
def reads() -> User:
    doctor = make_user("dr.house", role=Role.DOCTOR, first_name="Gregory", last_name="House")
    for n in range(3):
        record(
            "document.read",
            actor=doctor,
            extra={"n": n},
            reason="=HYPERLINK(evil)" if n == 2 else "",
        )
    # Patient fields without a Patient row: reports work on the copied identity.
    from vigie.audit.log import _build, append_batch

    event = _build(
        "document.download",
        request=None,
        actor=doctor,
        patient=None,
        document=None,
        outcome="success",
        reason="",
        extra=None,
    )
    event.patient_ipp = "IPP0000042"
    append_batch([event])
    return doctor


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.ADMIN])
@pytest.mark.parametrize("url", URLS)
def test_non_auditors_get_404_on_every_audit_page(role: Role, url: str) -> None:
    client = Client()
    log_in(client, make_user(f"user-{role}", role=role))
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("url", URLS)
def test_anonymous_visitors_never_see_audit_pages(url: str) -> None:
    response = Client().get(url)
    assert response.status_code in (302, 404)
    assert b"dr.house" not in response.content


def test_dashboard_shows_who_opened_records(dpo_client: Client, reads: User) -> None:
    response = dpo_client.get("/audit/")
    assert response.status_code == 200
    assert "Gregory House" in response.content.decode()
    assert AuditEvent.objects.filter(action="audit.dashboard.view").exists()


def test_patient_report_lists_accesses_and_is_audited(dpo_client: Client, reads: User) -> None:
    response = dpo_client.get("/audit/patients/IPP0000042/")
    assert response.status_code == 200
    page = response.content.decode()
    # The event as a person reads it, never its code.
    assert "Document téléchargé" in page
    assert "document.download" not in page
    viewed = AuditEvent.objects.get(action="audit.report.patient")
    assert viewed.actor_username == "dpo"
    assert viewed.extra["patient_ipp"] == "IPP0000042"


def test_csv_export_neutralises_formulas(dpo_client: Client, reads: User) -> None:
    response = dpo_client.get("/audit/actors/dr.house/?format=csv")
    assert response.status_code == 200
    body = response.getvalue()
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 4
    assert {row["reason"] for row in rows} >= {"'=HYPERLINK(evil)"}


def test_fhir_export_is_one_audit_event_per_line(dpo_client: Client, reads: User) -> None:
    response = dpo_client.get("/audit/actors/dr.house/?format=fhir")
    lines = response.getvalue().decode().splitlines()
    resources = [json.loads(line) for line in lines]
    assert [r["resourceType"] for r in resources] == ["AuditEvent"] * 4
    assert resources[0]["agent"][0]["who"]["identifier"]["value"] == "dr.house"
    assert resources[-1]["entity"][0]["what"]["identifier"]["value"] == "IPP0000042"


def test_pdf_export_is_a_pdf(dpo_client: Client, reads: User) -> None:
    response = dpo_client.get("/audit/patients/IPP0000042/?format=pdf")
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
