"""The FHIR R4 endpoint: systems create with an API key, doctors read within their scope.

Real PDFs (reportlab, pypdf), real keys, real sessions; the reads go through the portal's
scope lookups and door, so the same audit events are checked here as on the portal.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient as FhirPatient

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, log_in_password_only, make_user
from vigie.audit import refusals
from vigie.audit.models import AuditEvent
from vigie.intake.apikeys import create_key
from vigie.intake.fhir.resources import INS_SYSTEM, fhir_id
from vigie.intake.fhir.testing import FHIR_JSON, b64, by_ins, doc_ref, post
from vigie.portal.testing import relate
from vigie.records.models import Document, PatientIdentifier, PendingDocument
from vigie.records.testing import (
    VALID_PDF,
    make_document,
    make_patient,
    pdf_with_document_javascript,
)

pytestmark = pytest.mark.django_db

LAB_SYSTEM = "urn:oid:1.2.250.1.999.1"


@pytest.fixture(autouse=True)
def _env(settings, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def lab() -> Client:
    # A FHIR sender's source system is the identifier system of its own patient numbers.
    _, text = create_key("labo-test", source_system=LAB_SYSTEM)
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


@pytest.fixture
def doctor():
    return make_user("dr.house", role=Role.DOCTOR)


@pytest.fixture
def patient():
    return make_patient("DURAND")


def signed_in(user) -> Client:
    client = Client()
    log_in(client, user)
    return client


def outcome(response) -> OperationOutcome:
    assert response["Content-Type"].startswith(FHIR_JSON)
    return OperationOutcome.model_validate(json.loads(response.content))


def diagnostics(response) -> str:
    return " ".join(issue.diagnostics or "" for issue in outcome(response).issue)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- metadata --------------------------------------------------------------------------


def test_it_publishes_a_valid_capability_statement_to_anyone() -> None:
    response = Client().get("/fhir/metadata")
    assert response.status_code == 200
    statement: Any = CapabilityStatement.model_validate(json.loads(response.content))
    assert statement.fhirVersion == "4.0.1"
    resources = {r.type: r for r in statement.rest[0].resource}
    assert {i.code for i in resources["DocumentReference"].interaction} >= {"create", "search-type"}
    assert {p.name for p in resources["DocumentReference"].searchParam} == {
        "patient",
        "type",
        "date",
    }
    assert {i.code for i in resources["Binary"].interaction} == {"read"}
    assert "application/fhir+json" in statement.format


# --- create ----------------------------------------------------------------------------


def test_it_creates_a_document_readable_back_by_a_doctor_in_scope(lab, doctor, patient) -> None:
    response = post(lab, doc_ref(by_ins(patient)))
    assert response.status_code == 202, response.content
    assert "Location" not in response  # the same answer as for an unknown patient
    document = Document.objects.get()
    assert f"received as {document.pk}" in diagnostics(response)
    assert document.patient == patient
    assert document.kind == "lab_result"
    assert document.clinical_date == date(2026, 3, 2)
    assert document.source_system == LAB_SYSTEM  # from the key, not from the sender
    assert document.author == "Laboratoire Bio-Test"
    assert VALID_PDF[:20] not in response.content
    [event] = events("intake.fhir.create")
    assert event.document_id == document.pk
    assert event.extra["key"] == "labo-test"

    relate(doctor, patient)
    read = signed_in(doctor).get(f"/fhir/Binary/{fhir_id(document.pk)}")
    assert read.status_code == 200
    assert b"".join(read.streaming_content) == VALID_PDF  # type: ignore[attr-defined]
    assert events("document.download")[-1].document_id == document.pk


def test_it_matches_an_ipp_with_its_assigning_system(lab, patient) -> None:
    PatientIdentifier.objects.create(patient=patient, source=LAB_SYSTEM, value="L-778")
    contained = {
        "resourceType": "Patient",
        "id": "p",
        "identifier": [{"system": LAB_SYSTEM, "value": "L-778"}],
    }
    response = post(lab, doc_ref({"reference": "#p"}, contained=[contained]))
    assert response.status_code == 202, response.content
    assert Document.objects.get().patient == patient


def test_it_takes_a_conditional_reference(lab, patient) -> None:
    subject = {"reference": f"Patient?identifier={INS_SYSTEM}|{patient.ins}"}
    assert post(lab, doc_ref(subject)).status_code == 202
    assert Document.objects.get().patient == patient


def test_it_takes_a_binary_from_the_same_transaction(lab, patient) -> None:
    reference = doc_ref(by_ins(patient))
    reference["content"] = [{"attachment": {"contentType": "application/pdf", "url": "urn:uuid:1"}}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:2",
                "resource": reference,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:1",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": b64(VALID_PDF),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    response = post(lab, bundle, "/fhir/")
    assert response.status_code == 200, response.content
    reply: Any = Bundle.model_validate(json.loads(response.content))
    assert reply.entry[0].response.status.startswith("202")
    assert Document.objects.get().sha256 == hashlib.sha256(VALID_PDF).hexdigest()


def test_unknown_patient_is_kept_to_reconcile_and_attached_to_nobody(lab) -> None:
    contained = {
        "resourceType": "Patient",
        "id": "p",
        "identifier": [{"system": LAB_SYSTEM, "value": "NOBODY-1"}],
        "name": [{"family": "MARTIN", "given": ["Léa"]}],
        "birthDate": "1990-01-02",
    }
    response = post(lab, doc_ref({"reference": "#p"}, contained=[contained]))
    assert response.status_code == 202
    assert "NOBODY-1" not in diagnostics(response)
    assert Document.objects.count() == 0
    pending = PendingDocument.objects.get()
    assert pending.demographics["family_name"] == "MARTIN"
    assert pending.identifiers == {"ipp": "NOBODY-1", "ipp_source": LAB_SYSTEM}
    assert events("intake.fhir.create")[-1].extra["to_reconcile"] is True


def test_a_pdf_with_javascript_is_stored_but_flagged(lab, patient) -> None:
    response = post(lab, doc_ref(by_ins(patient), data=pdf_with_document_javascript()))
    assert response.status_code == 202
    assert Document.objects.get().active_content is True


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("{not json", 400, "not valid JSON"),
        ("[]", 400, "JSON object"),
        (json.dumps({"resourceType": "Patient"}), 400, "expected resourceType DocumentReference"),
    ],
)
def test_it_refuses_what_is_not_a_document_reference(lab, body, status, words) -> None:
    response = post(lab, body)
    assert response.status_code == status
    assert words in diagnostics(response)
    assert events("intake.fhir.refused")


def test_a_validation_error_names_the_path(lab, patient) -> None:
    response = post(lab, doc_ref(by_ins(patient), date="yesterday"))
    assert response.status_code == 400
    assert outcome(response).issue[0].expression == ["DocumentReference.date"]


def test_invalid_base64_is_refused_not_stored_as_nothing(lab, patient) -> None:
    resource = doc_ref(by_ins(patient))
    resource["content"][0]["attachment"]["data"] = "!!!not base64!!!"
    response = post(lab, resource)
    assert response.status_code == 400
    assert "base64" in diagnostics(response)
    assert Document.objects.count() == PendingDocument.objects.count() == 0


def test_non_pdf_data_is_refused(lab, patient) -> None:
    response = post(lab, doc_ref(by_ins(patient), data=b"<html>502 Bad Gateway</html>"))
    assert response.status_code == 422
    assert "not a application/pdf" in diagnostics(response)
    assert Document.objects.count() == 0


@pytest.mark.parametrize("url", ["Binary/xyz", "#missing", "urn:uuid:nowhere"])
def test_a_dangling_binary_reference_is_refused(lab, patient, url) -> None:
    resource = doc_ref(by_ins(patient))
    resource["content"] = [{"attachment": {"contentType": "application/pdf", "url": url}}]
    response = post(lab, resource)
    assert response.status_code == 422
    assert "dangling reference" in diagnostics(response)


def test_a_dangling_patient_reference_is_refused(lab, patient) -> None:
    for reference in ("Patient/does-not-exist", f"Patient/{patient.public_id}", "#nobody"):
        response = post(lab, doc_ref({"reference": reference}))
        assert response.status_code == 422
        assert "dangling reference" in diagnostics(response)
    assert Document.objects.count() == PendingDocument.objects.count() == 0


def test_an_attachment_url_is_never_fetched_server_side_request_forgery(lab, patient) -> None:
    resource = doc_ref(by_ins(patient))
    resource["content"] = [
        {
            "attachment": {
                "contentType": "application/pdf",
                "url": "http://169.254.169.254/latest/meta-data",
            }
        }
    ]
    response = post(lab, resource)
    assert response.status_code == 422
    assert "does not fetch" in diagnostics(response)


def test_a_truncated_transfer_is_caught_by_the_declared_size(lab, patient) -> None:
    resource = doc_ref(by_ins(patient))
    resource["content"][0]["attachment"]["size"] = len(VALID_PDF) + 10
    assert post(lab, resource).status_code == 422


def test_an_identifier_without_system_never_matches_the_clinic_ipp(lab, patient) -> None:
    response = post(lab, doc_ref({"identifier": {"value": patient.ipp}}))
    assert response.status_code == 422
    assert "no system" in diagnostics(response)
    assert Document.objects.count() == 0


def test_it_refuses_a_create_without_a_key_even_from_a_doctor_session(doctor, patient) -> None:
    for client in (Client(), signed_in(doctor)):
        response = post(client, doc_ref(by_ins(patient)))
        assert response.status_code == 401
        outcome(response)
    assert Document.objects.count() == 0


def test_it_refuses_a_wrong_key(patient) -> None:
    client = Client(HTTP_AUTHORIZATION="Bearer vk_abc_def")
    assert post(client, doc_ref(by_ins(patient))).status_code == 401
    assert events("intake.apikey.refused")


# --- reads -----------------------------------------------------------------------------


def test_api_key_cannot_read_fhir(lab, doctor, patient, monkeypatch) -> None:
    document = make_document(patient)
    relate(doctor, patient)
    paths = [
        f"/fhir/Binary/{fhir_id(document.pk)}",
        f"/fhir/DocumentReference?patient={fhir_id(patient.public_id)}",
        f"/fhir/DocumentReference/{fhir_id(document.pk)}",
        f"/fhir/Patient/{fhir_id(patient.public_id)}",
        "/fhir/Patient?name=DURAND",
    ]
    for path in paths:
        response = lab.get(path)
        assert response.status_code == 403, path
        assert outcome(response).issue[0].code == "forbidden"
    # Not even alongside a doctor's session: a request with a key is a system's request.
    both = signed_in(doctor)
    both.defaults["HTTP_AUTHORIZATION"] = lab.defaults["HTTP_AUTHORIZATION"]
    assert both.get(f"/fhir/Binary/{fhir_id(document.pk)}").status_code == 403
    # Anyone can send a key, so these are counted (refusals.py): the rest of the minute's
    # count is written once the minute is over.
    later = timezone.now() + timedelta(minutes=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    refusals.flush()
    refused = events("intake.fhir.read_refused")
    assert sum(event.extra["count"] for event in refused) == len(paths) + 1
    assert not events("document.download")


def test_anonymous_and_half_logged_in_get_401(doctor, patient) -> None:
    document = make_document(patient)
    relate(doctor, patient)
    half = Client()
    log_in_password_only(half, doctor)
    for client in (Client(), half):
        for path in (
            f"/fhir/Binary/{fhir_id(document.pk)}",
            f"/fhir/Patient/{fhir_id(patient.public_id)}",
        ):
            response = client.get(path)
            assert response.status_code == 401
            assert outcome(response).issue[0].code == "login"


def test_out_of_scope_doctor_gets_404_and_the_refusal_is_audited(doctor, patient) -> None:
    document = make_document(patient)
    outsider = signed_in(doctor)  # no care relationship with this patient
    for path in (
        f"/fhir/Binary/{fhir_id(document.pk)}",
        f"/fhir/DocumentReference?patient={fhir_id(patient.public_id)}",
        f"/fhir/Patient/{fhir_id(patient.public_id)}",
    ):
        response = outsider.get(path)
        assert response.status_code == 404, path
        assert outcome(response).issue[0].code == "not-found"
    assert [e.reason for e in events("document.read.denied")] == ["no_relationship"]
    assert len(events("patient.view.denied")) == 2
    assert not events("document.download")
    # An unknown id looks the same.
    assert outsider.get("/fhir/Binary/AAAAAAAAAAAAAAAAAAAAAAAA").content == response.content


def test_search_returns_only_matching_documents_of_the_patient(doctor, patient) -> None:
    relate(doctor, patient)
    lab_2024 = make_document(patient, clinical_date=date(2024, 6, 1))
    make_document(patient, clinical_date=date(2023, 6, 1))
    make_document(patient, kind="imaging_report", clinical_date=date(2024, 7, 1))
    make_document(make_patient("OTHER"), clinical_date=date(2024, 6, 1))
    response = signed_in(doctor).get(
        "/fhir/DocumentReference",
        {
            "patient": f"Patient/{patient.public_id}",
            "type": "http://loinc.org|11502-2",
            "date": "ge2024-01-01",
        },
    )
    assert response.status_code == 200
    bundle: Any = Bundle.model_validate(json.loads(response.content))
    assert bundle.type == "searchset"
    assert [entry.resource.id for entry in bundle.entry] == [fhir_id(lab_2024.pk)]
    assert events("patient.view")[-1].extra["channel"] == "fhir"


def test_search_refuses_unknown_parameters(doctor, patient) -> None:
    relate(doctor, patient)
    response = signed_in(doctor).get(
        "/fhir/DocumentReference", {"patient": patient.public_id, "subjekt": "x"}
    )
    assert response.status_code == 400


def test_patient_read_and_search_stay_in_scope(doctor, patient) -> None:
    relate(doctor, patient)
    stranger = make_patient("DURAND")
    client = signed_in(doctor)
    read = client.get(f"/fhir/Patient/{patient.public_id}")
    assert read.status_code == 200
    fhir_patient: Any = FhirPatient.model_validate(json.loads(read.content))
    assert fhir_patient.id == fhir_id(patient.public_id)
    for query in ({"name": "durand"}, {"identifier": f"{INS_SYSTEM}|{stranger.ins}"}, {}):
        found: Any = Bundle.model_validate(json.loads(client.get("/fhir/Patient", query).content))
        assert fhir_id(stranger.public_id) not in {e.resource.id for e in found.entry or []}
    found = Bundle.model_validate(
        json.loads(client.get("/fhir/Patient", {"name": "durand"}).content)
    )
    assert [e.resource.id for e in found.entry] == [fhir_id(patient.public_id)]
