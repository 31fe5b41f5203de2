"""`POST /api/v1/hprim`: an HPRIM file as the body, one receipt per patient, or a problem
that names the line to fix; never half a file stored.

Personas: a lab's key ("labo-bio"), the patient its base report names, a stranger's key.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from vigie import vault
from vigie.audit.models import AuditEvent
from vigie.intake.hprim import HprimError, parse, patient_bytes
from vigie.intake.hprim.channel import CONTENT_TYPE
from vigie.intake.hprim.testing import CORPUS, Report, cases, hprim, make_nir
from vigie.intake.models import ApiKey, ReceivedMessage
from vigie.intake.rest.testing import new_key
from vigie.records.content import stream_verified
from vigie.records.models import Document, DocumentKind, Patient, PendingDocument

pytestmark = pytest.mark.django_db

URL = "/api/v1/hprim"
PROBLEM = "application/problem+json"
MARTIN_NIR = make_nir("2850469123045")


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def lab() -> tuple[ApiKey, str]:
    return new_key("labo-bio")


@pytest.fixture
def martin() -> Patient:
    return Patient.objects.create(
        ipp="IPP-MARTIN",
        ins=MARTIN_NIR,
        family_name="MARTIN",
        given_names="Hélène",
        birth_date=datetime.date(1985, 4, 3),
        sex="F",
    )


def post(
    client: Client, key_text: str | None, raw: bytes, content_type: str = "text/plain", **extra: Any
) -> Any:
    headers = dict(extra)
    if key_text is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key_text}"
    return client.post(URL, raw, content_type=content_type, **headers)


def rows() -> list[Document | PendingDocument]:
    return [*Document.objects.all(), *PendingDocument.objects.all()]


def row_of(document_id: str) -> Document | PendingDocument:
    found = Document.objects.filter(pk=document_id).first()
    return found or PendingDocument.objects.get(pk=document_id)


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:vigie:problem:{slug}"
    assert body["detail"]
    assert body["request_id"]
    return body


def nothing_stored() -> None:
    assert rows() == []
    assert not ReceivedMessage.objects.exists()
    assert set(vault.get_store().iter_ids()) == set()


# -- the corpus ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(path.name for path in CORPUS.glob("*.hpr")))
def test_every_corpus_file_gets_the_answer_its_parse_says(
    client: Client, lab: tuple[ApiKey, str], martin: Patient, name: str
) -> None:
    raw = (CORPUS / name).read_bytes()
    response = post(client, lab[1], raw)
    refusal: HprimError | None = None
    try:
        # The API reads files as of today (the corpus's JSON is as of its own day).
        parsed = parse(raw)
    except HprimError as exc:
        refusal = exc
    if refusal is not None:
        body = problem(response, 422, "invalid-document")
        assert refusal.reason in body["detail"]
        if refusal.line is not None:
            assert f"line {refusal.line}:" in body["detail"]
        nothing_stored()
        return
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "received"
    assert body["warnings"] == parsed.warnings
    assert len(body["ids"]) == len(parsed.patients)
    for document_id, patient in zip(body["ids"], parsed.patients, strict=True):
        row = row_of(document_id)
        assert b"".join(stream_verified(row)) == patient_bytes(raw, parsed, patient)
        assert (row.kind, row.content_type, row.source_system) == (
            DocumentKind.LAB_RESULT,
            CONTENT_TYPE,
            "LABO-BIO",
        )
        exact = patient.nir == MARTIN_NIR and patient.birth_date == martin.birth_date
        assert isinstance(row, Document) == exact
        if exact:
            assert isinstance(row, Document)
            assert row.patient == martin


# -- answers ---------------------------------------------------------------------------------


def test_the_answer_is_the_same_for_a_known_and_an_unknown_patient(
    client: Client, lab: tuple[ApiKey, str], martin: Patient
) -> None:
    known = post(client, lab[1], hprim([Report()]))
    unknown = post(client, lab[1], hprim([Report(nir="", family_name="INCONNU")]))
    assert known.status_code == unknown.status_code == 202
    assert set(known.json()) == set(unknown.json()) == {"status", "ids", "warnings"}
    assert isinstance(row_of(known.json()["ids"][0]), Document)
    assert isinstance(row_of(unknown.json()["ids"][0]), PendingDocument)


def test_the_same_file_sent_again_gets_the_first_answer_and_stores_nothing(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    raw = cases()["multi_patient_three"][0]
    first = post(client, lab[1], raw)
    # Through another key of the same laboratory: still the same delivery.
    again = post(client, new_key("labo-bio-2")[1], raw, content_type="application/octet-stream")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(rows()) == 3
    assert AuditEvent.objects.filter(action="intake.replayed").count() == 1


def test_another_laboratorys_key_does_not_replay_its_neighbours_receipts(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    from vigie.intake.apikeys import create_key

    raw = hprim([Report()])
    first = post(client, lab[1], raw)
    _key, other = create_key("labo-other", source_system="LABO-OTHER", by="test")
    second = post(client, other, raw)
    assert second.status_code == 202
    assert "Idempotent-Replayed" not in second
    assert second.json()["ids"] != first.json()["ids"]
    assert {row.source_system for row in rows()} == {"LABO-BIO", "LABO-OTHER"}


def test_a_refused_file_names_the_line_to_fix_and_nothing_else(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    raw = hprim([Report(birth_date="31/02/1985")])
    body = problem(post(client, lab[1], raw), 422, "invalid-document")
    assert "line 7:" in body["detail"]
    assert "birth date" in body["detail"]
    # Refusal reasons go to logs and the sender: never the patient's data.
    assert "MARTIN" not in body["detail"]
    nothing_stored()
    event = AuditEvent.objects.get(action="intake.rejected")
    assert "line 7" in event.extra["detail"]


def test_a_store_failing_midway_stores_nothing_and_says_retry(
    client: Client, lab: tuple[ApiKey, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_seal = vault.seal
    calls: list[int] = []

    def full_at_the_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_seal(*args, **kwargs)

    monkeypatch.setattr(vault, "seal", full_at_the_third)
    response = post(client, lab[1], cases()["multi_patient_three"][0])
    problem(response, 503, "storage-unavailable")
    assert response["Retry-After"]
    assert len(calls) == 3
    nothing_stored()


@pytest.mark.parametrize(
    ("content_type", "status", "slug"),
    [
        ("multipart/form-data; boundary=x", 415, "unsupported-media-type"),
        ("image/png", 415, "unsupported-media-type"),
    ],
)
def test_a_body_that_is_not_a_file_as_is_is_refused_before_reading(
    client: Client, lab: tuple[ApiKey, str], content_type: str, status: int, slug: str
) -> None:
    problem(post(client, lab[1], hprim([Report()]), content_type=content_type), status, slug)
    nothing_stored()


def test_a_declared_length_over_the_limit_is_refused_unread(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    response = post(client, lab[1], b"x", CONTENT_LENGTH=str(64 * 1024 * 1024))
    problem(response, 413, "payload-too-large")
    nothing_stored()


def test_a_body_without_content_length_is_refused_unread(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    # The preamble shared with POST /api/v1/documents: chunked uploads are not accepted.
    response = post(client, lab[1], hprim([Report()]), CONTENT_LENGTH="")
    problem(response, 411, "length-required")
    assert AuditEvent.objects.filter(action="intake.rejected").get().extra["key"] == "labo-bio"
    nothing_stored()


def test_a_get_is_refused_and_reads_nothing(client: Client, lab: tuple[ApiKey, str]) -> None:
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {lab[1]}")
    problem(response, 405, "method-not-allowed")
    assert response["Allow"] == "POST"


def test_attack_no_key_no_reading(client: Client) -> None:
    problem(post(client, None, hprim([Report()])), 401, "unauthorized")
    nothing_stored()


def test_attack_a_revoked_key_stores_nothing(client: Client, lab: tuple[ApiKey, str]) -> None:
    from vigie.intake.apikeys import revoke

    revoke(lab[0], by="test")
    problem(post(client, lab[1], hprim([Report()])), 401, "unauthorized")
    nothing_stored()


def test_every_patient_gets_its_own_arrival_event_naming_the_key(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    response = post(client, lab[1], cases()["multi_patient_three"][0])
    events = AuditEvent.objects.filter(action="intake.received").order_by("seq")
    assert [e.extra["hprim_patient"] for e in events] == [1, 2, 3]
    assert {e.extra["key"] for e in events} == {"labo-bio"}
    assert [e.extra.get("pending_id") or e.extra.get("document_id") for e in events] == (
        response.json()["ids"]
    )
    assert json.dumps([e.extra for e in events]).count("MARTIN") == 0
