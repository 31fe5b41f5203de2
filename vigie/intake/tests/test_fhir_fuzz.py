"""Fuzzing POST /fhir/DocumentReference (issue 6: about a minute, bounded, in CI).

Whatever a sender posts, the answer is a 201/202 or an OperationOutcome with a 4xx: never a
5xx, never an unhandled exception (the test client re-raises those).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie.intake.apikeys import create_key
from vigie.intake.fhir.resources import INS_SYSTEM
from vigie.records.testing import VALID_PDF

pytestmark = pytest.mark.django_db

_FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
maybe = lambda strategy: st.one_of(strategy, json_values)  # noqa: E731 -- a local shorthand
b64_data = st.one_of(
    st.just(base64.b64encode(VALID_PDF).decode()),
    st.binary(max_size=64).map(lambda data: base64.b64encode(data).decode()),
    st.text(max_size=20),
)
identifiers = st.fixed_dictionaries(
    {},
    optional={
        "system": maybe(st.sampled_from([INS_SYSTEM, "urn:oid:1.2.3", ""])),
        "value": maybe(st.sampled_from(["285037500100137", "IPP0000001", "x", ""])),
    },
)
subjects = st.fixed_dictionaries(
    {},
    optional={
        "identifier": maybe(identifiers),
        "reference": maybe(
            st.sampled_from(
                [
                    "#p",
                    "#q",
                    "Patient/1",
                    f"Patient?identifier={INS_SYSTEM}|1",
                    "Patient?name=x",
                    "",
                ]
            )
        ),
    },
)
attachments = st.fixed_dictionaries(
    {},
    optional={
        "contentType": maybe(st.sampled_from(["application/pdf", "image/png", "text/html", ""])),
        "data": maybe(b64_data),
        "url": maybe(st.sampled_from(["#b", "Binary/x", "urn:uuid:1", "http://example.org/x"])),
        "size": maybe(st.integers(min_value=-1, max_value=10**6)),
        "hash": maybe(st.text(max_size=8)),
    },
)
document_references = st.fixed_dictionaries(
    {"resourceType": st.just("DocumentReference")},
    optional={
        "status": maybe(st.sampled_from(["current", "superseded", "entered-in-error"])),
        "type": maybe(st.just({"coding": [{"system": "http://loinc.org", "code": "11502-2"}]})),
        "subject": maybe(subjects),
        "date": maybe(st.sampled_from(["2024-01-02T03:04:05Z", "2024", "2024-13-45", ""])),
        "context": maybe(st.just({"period": {"start": "2024-05"}})),
        "author": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"display": st.text(max_size=10), "reference": st.just("#a")}
                ),
                max_size=2,
            )
        ),
        "description": maybe(st.text(max_size=300)),
        "content": maybe(
            st.lists(st.fixed_dictionaries({"attachment": maybe(attachments)}), max_size=2)
        ),
        "contained": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "resourceType": st.sampled_from(["Patient", "Binary", "Practitioner"]),
                        "id": st.sampled_from(["p", "b", "a"]),
                    },
                    optional={
                        "identifier": st.lists(identifiers, max_size=2),
                        "data": b64_data,
                        "birthDate": st.text(max_size=10),
                    },
                ),
                max_size=3,
            )
        ),
    },
)


@pytest.fixture
def lab(settings, vault_home: Path) -> Client:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False
    _, text = create_key("fuzz-lab", source_system="FUZZ")
    # raise_request_exception (the default) makes any unhandled exception fail the test.
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


def _check(client: Client, body: bytes) -> None:
    response = client.post("/fhir/DocumentReference", body, content_type="application/fhir+json")
    assert response.status_code < 500, response.content
    if response.status_code in (201, 202):
        return
    assert 400 <= response.status_code < 500
    OperationOutcome.model_validate(json.loads(response.content))


@_FUZZ
@given(payload=json_values)
def test_arbitrary_json_never_breaks_it(lab: Client, payload: Any) -> None:
    _check(lab, json.dumps(payload).encode())


@_FUZZ
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_break_it(lab: Client, raw: bytes) -> None:
    _check(lab, raw)


@settings(parent=_FUZZ, max_examples=200)
@given(resource=document_references)
def test_document_reference_shaped_input_never_breaks_it(
    lab: Client, resource: dict[str, Any]
) -> None:
    _check(lab, json.dumps(resource).encode())
