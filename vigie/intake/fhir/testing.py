"""Builders for tests that post FHIR resources (plain code, no pytest: see
tests/test_test_helpers.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.test import Client

from vigie.intake.fhir.resources import INS_SYSTEM
from vigie.records.models import Patient
from vigie.records.testing import VALID_PDF

FHIR_JSON = "application/fhir+json"


def doc_ref(subject: dict[str, Any], data: bytes = VALID_PDF, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
        "subject": subject,
        "date": "2026-03-02T09:30:00+01:00",
        "author": [{"display": "Laboratoire Bio-Test"}],
        "description": "Numération formule sanguine",
        "content": [{"attachment": {"contentType": "application/pdf", "data": b64(data)}}],
    }
    resource.update(extra)
    return resource


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def by_ins(patient: Patient) -> dict[str, Any]:
    return {"identifier": {"system": INS_SYSTEM, "value": patient.ins}}


def post(client: Client, resource: Any, path: str = "/fhir/DocumentReference") -> Any:
    body = resource if isinstance(resource, str | bytes) else json.dumps(resource)
    return client.post(path, body, content_type=FHIR_JSON)
