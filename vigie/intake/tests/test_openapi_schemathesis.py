"""The REST intake checked against its own OpenAPI document, in process (WSGI), by
schemathesis: generated requests (valid and invalid) never get a 5xx, and every answer has
a documented status, content type, headers and body. Bounded and deadline-free."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vigie.intake.models import ApiKey
from vigie.intake.rest.openapi import schema as build_schema
from vigie.intake.rest.testing import SCHEMA_URL, metadata, new_key, pdf
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    # Schemathesis calls the raw WSGI application, whose request signals close "old"
    # connections, the test's transaction included (on PostgreSQL; SQLite's in-memory test
    # database ignores it). Django's own test client disconnects them the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_key(settings: Any, vault_home: Path) -> tuple[ApiKey, str]:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False
    settings.ALLOWED_HOSTS = ["*"]
    return new_key("schemathesis")


@pytest.fixture
def api_schema(api_key: tuple[ApiKey, str]) -> Any:
    # Loaded through the running application: the served document is the one tested.
    return schemathesis.openapi.from_wsgi(
        SCHEMA_URL, WSGIHandler(), headers={"Authorization": f"Bearer {api_key[1]}"}
    )


# Hypothesis drives schemathesis' strategies directly: schemathesis' own pytest plugin
# (`schema.parametrize()`) does not run under pytest 9.
@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/v1/documents", "POST"), ("/api/v1/hprim", "POST"), ("/api/v1/openapi.json", "GET")],
)
def test_the_api_conforms_to_its_openapi_document(
    api_schema: Any, api_key: tuple[ApiKey, str], path: str, method: str, mode: Any
) -> None:
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {api_key[1]}"}
    seen: set[int] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=auth, checks=CHECKS)
        seen.add(response.status_code)

    check()
    # The run exercised the endpoint, not only the key check.
    assert seen - {401, 403}, seen


@pytest.mark.parametrize("known", [True, False])
def test_a_real_document_gets_an_answer_that_conforms(
    api_schema: Any, api_key: tuple[ApiKey, str], known: bool
) -> None:
    # Random bytes are never a PDF: the 202 answers are checked with real documents.
    patient = make_patient()
    who = metadata(ins=patient.ins) if known else metadata(ipp="NOBODY-9", ipp_source="LABO-BIO")
    operation = api_schema["/api/v1/documents"]["POST"]
    case = operation.Case(
        body={"file": pdf(), "metadata": json.dumps(who)},
        media_type="multipart/form-data",
        headers={"Idempotency-Key": f"real-{known}"},
    )
    auth = {"Authorization": f"Bearer {api_key[1]}"}
    first = case.call_and_validate(headers=auth, checks=CHECKS)
    again = case.call_and_validate(headers=auth, checks=CHECKS)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    # The same answer for a known and an unknown patient: the receipt says nothing more.
    assert first.json()["status"] == "received"


def test_the_served_document_is_openapi_3_1_and_describes_the_endpoint(
    api_schema: Any,
) -> None:
    document = build_schema()
    assert document["openapi"].startswith("3.1")
    post = document["paths"]["/api/v1/documents"]["post"]
    assert {"202", "400", "401", "403", "409", "413", "415", "422", "503"} <= set(post["responses"])
    assert "201" not in post["responses"]
    received = document["components"]["schemas"]["Received"]["properties"]["status"]
    assert received["enum"] == ["received"]
    assert "reconcil" in received["description"]
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert api_schema.raw_schema == document


def test_the_document_is_not_served_without_a_key(client: Any, db: None) -> None:
    response = client.get(SCHEMA_URL)
    assert response.status_code == 401
    assert b"openapi" not in response.content


def test_a_real_hprim_file_gets_an_answer_that_conforms(
    api_schema: Any, api_key: tuple[ApiKey, str]
) -> None:
    from vigie.intake.hprim.testing import cases

    operation = api_schema["/api/v1/hprim"]["POST"]
    case = operation.Case(body=cases()["multi_patient_three"][0], media_type="text/plain")
    auth = {"Authorization": f"Bearer {api_key[1]}"}
    first = case.call_and_validate(headers=auth, checks=CHECKS)
    again = case.call_and_validate(headers=auth, checks=CHECKS)
    assert first.status_code == again.status_code == 202
    assert len(first.json()["ids"]) == 3
    assert again.json() == first.json()
    replayed = {name.lower(): value for name, value in again.headers.items()}
    assert replayed["idempotent-replayed"] in ("true", ["true"])
