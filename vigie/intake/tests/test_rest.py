"""`POST /api/v1/documents`: what a lab's middleware sends, and every answer it can get.

Personas: a lab's key ("labo-bio"), a patient of the clinic, an unknown patient, and a
stranger holding a stolen key. Every refusal is checked for "nothing half-stored": no
Document, no PendingDocument, no blob, no idempotency record.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files import uploadedfile
from django.test import Client

from vigie.accounts.testing import log_in
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.intake.apikeys import revoke
from vigie.intake.models import ApiKey, IdempotencyRecord
from vigie.intake.rest import idempotency, views
from vigie.intake.rest.testing import URL, metadata, new_key, pdf, send
from vigie.records.content import stream_verified
from vigie.records.models import Document, PendingDocument
from vigie.records.testing import make_doctor, make_document, make_patient

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    # Audit events on the calling thread, so they are visible inside the test's transaction.
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def lab() -> tuple[ApiKey, str]:
    return new_key("labo-bio")


def _blobs(home: Path) -> list[Path]:
    root = home / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _nothing_stored(home: Path) -> None:
    assert Document.objects.count() == 0
    assert PendingDocument.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    assert _blobs(home) == []


def _events_naming(key: ApiKey) -> list[AuditEvent]:
    return [e for e in AuditEvent.objects.order_by("seq") if e.extra.get("key") == key.name]


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:vigie:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["request_id"]
    return body


# --- accepted -------------------------------------------------------------------------


def test_it_stores_the_document_for_the_patient_its_ins_designates(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    _key, text = lab
    patient = make_patient("MARTINEAU")
    content = pdf()
    response = send(client, text, content=content, meta=metadata(ins=patient.ins))
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"id", "status", "warnings"}
    assert body["status"] == "received"
    assert body["warnings"] == []
    document = Document.objects.get(pk=body["id"])
    assert document.patient == patient
    # The source system is the key's, whatever the request says.
    assert document.source_system == "LABO-BIO"
    assert document.kind == "lab_result"
    assert b"".join(stream_verified(document)) == content
    assert response["Cache-Control"] == "no-store"


def test_the_answer_discloses_nothing_about_the_patient(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    patient = make_patient("CONFIDENTIEL")
    response = send(client, lab[1], content=pdf(), meta=metadata(ipp=patient.ipp))
    assert response.status_code == 202
    for secret in (patient.ipp, patient.ins, patient.public_id, "CONFIDENTIEL", "Camille"):
        assert str(secret).encode() not in response.content


def test_an_unknown_patient_gets_a_document_to_reconcile_attached_to_nobody(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path
) -> None:
    response = send(
        client,
        lab[1],
        content=pdf(),
        meta=metadata(ipp="LAB-000123", ipp_source="LABO-BIO", family_name="INCONNU"),
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "received"  # as for a known patient: see test_attack_...
    pending = PendingDocument.objects.get(pk=body["id"])
    assert pending.document is None
    assert pending.channel == "rest"
    assert Document.objects.count() == 0
    assert len(_blobs(vault_home)) == 1


def test_a_pdf_with_javascript_is_stored_but_flagged(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    patient = make_patient()
    content = pdf(javascript="app.alert('hello');")
    response = send(client, lab[1], content=content, meta=metadata(ins=patient.ins))
    assert response.status_code == 202, response.content
    body = response.json()
    assert "javascript" in body["warnings"]
    document = Document.objects.get(pk=body["id"])
    assert document.active_content is True


def test_it_accepts_the_metadata_as_a_json_file_part(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    # What `curl -F file=@r.pdf -F metadata=@meta.json` sends.
    patient = make_patient()
    meta = io.BytesIO(json.dumps(metadata(ins=patient.ins)).encode())
    meta.name = "meta.json"
    upload = io.BytesIO(pdf())
    upload.name = "r.pdf"
    response = client.post(
        URL, {"file": upload, "metadata": meta}, HTTP_AUTHORIZATION=f"Bearer {lab[1]}"
    )
    assert response.status_code == 202, response.content


def test_it_is_not_subject_to_csrf_since_no_cookie_authenticates(
    lab: tuple[ApiKey, str],
) -> None:
    patient = make_patient()
    strict = Client(enforce_csrf_checks=True)
    response = send(strict, lab[1], content=pdf(), meta=metadata(ins=patient.ins))
    assert response.status_code == 202


# --- every use is audited once, with the key's name -------------------------------------


@pytest.mark.parametrize("known", [True, False])
def test_every_successful_use_leaves_exactly_one_audit_event_with_the_keys_name(
    client: Client, lab: tuple[ApiKey, str], known: bool
) -> None:
    key, text = lab
    patient = make_patient()
    who = metadata(ins=patient.ins) if known else metadata(ipp="NOBODY-1", ipp_source="LABO-BIO")
    before = len(_events_naming(key))
    response = send(client, text, content=pdf(), meta=who, REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 202
    events = _events_naming(key)[before:]
    assert len(events) == 1
    event = events[0]
    assert event.action == "intake.received"
    assert event.source_ip == "192.0.2.10"
    assert event.extra["channel"] == "rest"
    if known:
        assert event.document_id == response.json()["id"]
        assert event.extra["document_id"] == response.json()["id"]
    else:
        assert event.extra["pending_id"] == response.json()["id"]


def test_a_refusal_after_authentication_is_audited_with_the_keys_name(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    key, text = lab
    response = send(client, text, content=pdf(), meta="{not json")
    _problem(response, 400, "malformed-request")
    events = _events_naming(key)
    assert [e.action for e in events][-1] == "intake.rejected"
    assert events[-1].reason == "malformed-request"


# --- the bad-input corpus -------------------------------------------------------------

_VALID_PDF = pdf()


def _meta_without(section: str, field: str) -> dict[str, Any]:
    meta = metadata(ins="{ins}")
    del meta[section][field]
    return meta


CORPUS: list[tuple[str, bytes | None, Any, int, str]] = [
    ("truncated PDF", _VALID_PDF[: len(_VALID_PDF) // 2], metadata(ins="{ins}"), 422, "invalid-document"),
    ("HTML error page named .pdf", b"<html><body>502 Bad Gateway</body></html>", metadata(ins="{ins}"), 422, "invalid-document"),
    ("0 bytes", b"", metadata(ins="{ins}"), 422, "invalid-document"),
    ("metadata not JSON", _VALID_PDF, '{"patient": {"ins": ', 400, "malformed-request"),
    ("metadata not an object", _VALID_PDF, "[1, 2]", 400, "invalid-metadata"),
    ("title missing", _VALID_PDF, _meta_without("document", "title"), 400, "invalid-metadata"),
    ("kind missing", _VALID_PDF, _meta_without("document", "kind"), 400, "invalid-metadata"),
    ("date as a timestamp", _VALID_PDF, {**metadata(ins="{ins}"), "document": {**metadata()["document"], "clinical_date": 1790000000}}, 400, "invalid-metadata"),
    ("misspelt field", _VALID_PDF, {"patient": {"INS": "{ins}"}, "document": metadata()["document"]}, 400, "invalid-metadata"),
    ("invalid INS control key", _VALID_PDF, metadata(ins="285037500100199"), 422, "invalid-document"),
    ("no patient identification at all", _VALID_PDF, metadata(), 422, "invalid-document"),
    ("file part missing", None, metadata(ins="{ins}"), 400, "malformed-request"),
    ("metadata part missing", _VALID_PDF, None, 400, "malformed-request"),
    ("HTML declared as the document type", _VALID_PDF, {**metadata(ins="{ins}"), "document": {**metadata()["document"], "content_type": "text/html"}}, 415, "unsupported-media-type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "meta", "status", "slug"),
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_bad_input_gets_a_clear_problem_and_nothing_is_half_stored(
    client: Client,
    lab: tuple[ApiKey, str],
    vault_home: Path,
    content: bytes | None,
    meta: Any,
    status: int,
    slug: str,
) -> None:
    patient = make_patient()
    if meta is not None:
        text = meta if isinstance(meta, str) else json.dumps(meta)
        meta = text.replace("{ins}", str(patient.ins))
    response = send(client, lab[1], content=content, meta=meta, idempotency_key="retry-1")
    _problem(response, status, slug)
    _nothing_stored(vault_home)


def test_field_problems_point_at_each_field(client: Client, lab: tuple[ApiKey, str]) -> None:
    meta = {
        "patient": {"ins": 285037500100199, "birthdate": "1985-03-14"},
        "document": {"kind": "scan", "clinical_date": "02/11/2026"},
    }
    body = _problem(send(client, lab[1], content=pdf(), meta=meta), 400, "invalid-metadata")
    pointers = {error["pointer"] for error in body["errors"]}
    assert pointers == {
        "#/patient/ins",
        "#/patient/birthdate",
        "#/document/kind",
        "#/document/title",
        "#/document/clinical_date",
    }
    # The submitted values are never echoed back.
    assert b"285037500100199" not in json.dumps(body).encode()


def test_a_missing_file_part_is_named(client: Client, lab: tuple[ApiKey, str]) -> None:
    body = _problem(send(client, lab[1], meta=metadata(ins="x")), 400, "malformed-request")
    assert body["errors"] == [{"pointer": "#/file", "detail": body["errors"][0]["detail"]}]


def test_an_invalid_ins_key_says_what_is_wrong(client: Client, lab: tuple[ApiKey, str]) -> None:
    response = send(client, lab[1], content=pdf(), meta=metadata(ins="285037500100199"))
    assert "control key" in _problem(response, 422, "invalid-document")["detail"]


def test_a_body_that_is_not_multipart_is_unsupported(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path
) -> None:
    response = client.post(
        URL,
        json.dumps(metadata(ins="x")),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {lab[1]}",
    )
    _problem(response, 415, "unsupported-media-type")
    _nothing_stored(vault_home)


class _Unreadable(io.RawIOBase):
    """A request body that fails the test if anyone reads it."""

    reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        type(self).reads += 1
        raise AssertionError("the body was read")

    def readinto(self, buffer: Any) -> int:
        type(self).reads += 1
        raise AssertionError("the body was read")


def test_a_declared_size_far_above_the_limit_is_refused_without_reading_the_body(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path, settings: Any
) -> None:
    settings.VIGIE_MAX_DOCUMENT_SIZE = 10 * 1024 * 1024
    _Unreadable.reads = 0
    body: dict[str, Any] = {"CONTENT_LENGTH": str(50 * 1024**3), "wsgi.input": _Unreadable()}
    response = client.generic(
        "POST",
        URL,
        content_type="multipart/form-data; boundary=xyz",
        HTTP_AUTHORIZATION=f"Bearer {lab[1]}",
        **body,
    )
    _problem(response, 413, "payload-too-large")
    assert _Unreadable.reads == 0
    _nothing_stored(vault_home)


def test_a_file_above_the_limit_is_refused_even_when_the_declared_size_is_close(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path, settings: Any
) -> None:
    settings.VIGIE_MAX_DOCUMENT_SIZE = 4096
    big = pdf() + b"%" + b"x" * 8000 + b"\n%%EOF\n"
    patient = make_patient()
    response = send(client, lab[1], content=big, meta=metadata(ins=patient.ins))
    _problem(response, 413, "payload-too-large")
    _nothing_stored(vault_home)


def test_a_request_without_content_length_is_refused(
    client: Client, lab: tuple[ApiKey, str]
) -> None:
    response = client.generic(
        "POST",
        URL,
        b"",
        content_type="multipart/form-data; boundary=xyz",
        HTTP_AUTHORIZATION=f"Bearer {lab[1]}",
        CONTENT_LENGTH="",
    )
    _problem(response, 411, "length-required")


def test_a_large_upload_never_goes_to_a_plaintext_temporary_file(
    client: Client,
    lab: tuple[ApiKey, str],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Django's defaults would spill anything above this into /tmp, unencrypted.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    spilled: list[str] = []

    class Spy(uploadedfile.TemporaryUploadedFile):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            spilled.append(str(args[0] if args else kwargs.get("name")))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("django.core.files.uploadhandler.TemporaryUploadedFile", Spy)
    patient = make_patient()
    content = pdf(pages=400)
    assert len(content) > 10 * settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    response = send(client, lab[1], content=content, meta=metadata(ins=patient.ins))
    assert response.status_code == 202, response.content
    assert spilled == []
    # The spy would have caught Django's default handler (the test can fail).
    monkeypatch.setattr(views, "MemoryOnlyUploadHandler", _DefaultHandlers)
    send(client, lab[1], content=content, meta=metadata(ins=patient.ins))
    assert spilled


class _DefaultHandlers:
    """Stands in for the memory-only handler to prove the spy above sees a spill."""

    def __new__(cls, request: Any, limit: int) -> Any:
        from django.core.files.uploadhandler import TemporaryFileUploadHandler

        handler = TemporaryFileUploadHandler(request)
        handler.too_large = False  # type: ignore[attr-defined]
        return handler


# --- idempotency ----------------------------------------------------------------------


def test_a_retry_with_the_same_idempotency_key_gets_the_same_answer_and_no_second_document(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path
) -> None:
    patient = make_patient()
    content = pdf()
    meta = metadata(ins=patient.ins)
    first = send(client, lab[1], content=content, meta=meta, idempotency_key="order-42")
    # Same metadata, other key order and spacing: the same payload.
    reordered = json.dumps({"document": meta["document"], "patient": meta["patient"]}, indent=2)
    again = send(client, lab[1], content=content, meta=reordered, idempotency_key="order-42")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Document.objects.count() == 1
    assert len(_blobs(vault_home)) == 1


def test_the_same_idempotency_key_with_another_document_is_a_conflict(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path
) -> None:
    patient = make_patient()
    meta = metadata(ins=patient.ins)
    assert send(client, lab[1], content=pdf(), meta=meta, idempotency_key="k1").status_code == 202
    other = pdf(pages=2)
    response = send(client, lab[1], content=other, meta=meta, idempotency_key="k1")
    _problem(response, 409, "idempotency-conflict")
    assert Document.objects.count() == 1
    assert len(_blobs(vault_home)) == 1


def test_idempotency_keys_are_per_api_key(client: Client, lab: tuple[ApiKey, str]) -> None:
    _other, other_text = new_key("radiologie")
    patient = make_patient()
    meta = metadata(ins=patient.ins)
    assert send(client, lab[1], content=pdf(), meta=meta, idempotency_key="1").status_code == 202
    response = send(client, other_text, content=pdf(pages=2), meta=meta, idempotency_key="1")
    assert response.status_code == 202
    assert Document.objects.count() == 2


def test_an_idempotency_key_is_remembered_only_with_its_document(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path
) -> None:
    patient = make_patient()
    meta = metadata(ins=patient.ins)
    # Refused (truncated): nothing remembered, so the corrected retry is taken.
    refused = send(client, lab[1], content=pdf()[:100], meta=meta, idempotency_key="fix-me")
    assert refused.status_code == 422
    fixed = send(client, lab[1], content=pdf(), meta=meta, idempotency_key="fix-me")
    assert fixed.status_code == 202
    record = IdempotencyRecord.objects.get(key="fix-me")
    assert record.response == fixed.json()
    assert Document.objects.filter(pk=record.response["id"]).exists()


def test_two_concurrent_requests_with_one_key_store_one_document(
    client: Client,
    lab: tuple[ApiKey, str],
    vault_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race, made deterministic: the second request's first look-up runs before the
    # first request commits (it sees nothing), then its own insert hits the constraint.
    patient = make_patient()
    meta, content = metadata(ins=patient.ins), pdf()
    first = send(client, lab[1], content=content, meta=meta, idempotency_key="race")
    real_previous = idempotency.previous
    calls: list[int] = []

    def late_previous(*args: Any) -> Any:
        calls.append(1)
        return None if len(calls) == 1 else real_previous(*args)

    monkeypatch.setattr(idempotency, "previous", late_previous)
    second = send(client, lab[1], content=content, meta=meta, idempotency_key="race")
    assert len(calls) == 2
    assert second.status_code == 202
    assert second.json() == first.json()
    assert Document.objects.count() == 1
    # The loser's blob was removed with its rolled-back row: no orphan.
    assert len(_blobs(vault_home)) == 1
    # And with another payload, the loser is told about the conflict.
    calls.clear()
    third = send(client, lab[1], content=pdf(pages=3), meta=meta, idempotency_key="race")
    _problem(third, 409, "idempotency-conflict")
    assert len(_blobs(vault_home)) == 1


@pytest.mark.parametrize("value", ["x" * 256, " padded ", "caf\u00e9"])
def test_a_malformed_idempotency_key_is_refused(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path, value: str
) -> None:
    patient = make_patient()
    response = send(
        client, lab[1], content=pdf(), meta=metadata(ins=patient.ins), idempotency_key=value
    )
    _problem(response, 400, "invalid-idempotency-key")
    _nothing_stored(vault_home)


# --- outages: fail closed, nothing kept, retry later ----------------------------------


def test_when_the_audit_log_is_unavailable_nothing_is_stored(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigie.audit.log import record as real_record

    def failing(action: str, **kwargs: Any) -> Any:
        if action == "intake.received":
            raise AuditUnavailable("disk full")
        return real_record(action, **kwargs)

    monkeypatch.setattr("vigie.intake.rest.views.record", failing)
    patient = make_patient()
    response = send(
        client, lab[1], content=pdf(), meta=metadata(ins=patient.ins), idempotency_key="a"
    )
    _problem(response, 503, "audit-unavailable")
    assert response["Retry-After"].isdigit()
    _nothing_stored(vault_home)


def test_when_storage_fails_the_sender_is_told_to_retry_and_nothing_is_kept(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigie.vault.group import SealGroup

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    # Uploads are stored in rounds (rest/rounds.py), whose blobs a SealGroup writes.
    monkeypatch.setattr(SealGroup, "seal", full)
    patient = make_patient()
    response = send(client, lab[1], content=pdf(), meta=metadata(ins=patient.ins))
    _problem(response, 503, "storage-unavailable")
    assert response["Retry-After"].isdigit()
    _nothing_stored(vault_home)


# --- credentials ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not-a-key", "Bearer vk_000000000000_forged", "Basic dXNlcjpwYXNz"],
)
def test_a_request_without_a_valid_key_is_refused_and_nothing_read(
    client: Client, vault_home: Path, header: str | None
) -> None:
    extra: dict[str, Any] = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(URL, {"file": io.BytesIO(pdf()), "metadata": "{}"}, **extra)
    _problem(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")
    _nothing_stored(vault_home)


def test_a_revoked_key_is_refused_and_the_attempt_audited(
    client: Client, lab: tuple[ApiKey, str], vault_home: Path
) -> None:
    key, text = lab
    revoke(key, by="it.admin")
    patient = make_patient()
    response = send(client, text, content=pdf(), meta=metadata(ins=patient.ins))
    assert "revoked" in _problem(response, 401, "unauthorized")["detail"]
    _nothing_stored(vault_home)
    refused = AuditEvent.objects.filter(action="intake.apikey.refused").get()
    assert refused.reason == "revoked"
    assert refused.extra["key"] == key.name
    assert refused.outcome == "denied"


def test_stolen_api_key_used_from_another_network_is_refused(
    client: Client, vault_home: Path
) -> None:
    _key, text = new_key("labo-reseau", networks=["10.20.0.0/16"])
    patient = make_patient()
    meta = metadata(ins=patient.ins)
    stolen = send(client, text, content=pdf(), meta=meta, REMOTE_ADDR="203.0.113.66")
    _problem(stolen, 403, "address-not-allowed")
    _nothing_stored(vault_home)
    refused = AuditEvent.objects.filter(action="intake.apikey.refused").get()
    assert (refused.reason, refused.source_ip) == ("network", "203.0.113.66")
    # The lab itself, from its own network, is served.
    own = send(client, text, content=pdf(), meta=meta, REMOTE_ADDR="10.20.3.4")
    assert own.status_code == 202


def test_a_forged_forwarded_for_header_does_not_launder_a_stolen_key(
    client: Client, vault_home: Path
) -> None:
    _key, text = new_key("labo-proxy", networks=["10.20.0.0/16"])
    patient = make_patient()
    response = send(
        client,
        text,
        content=pdf(),
        meta=metadata(ins=patient.ins),
        REMOTE_ADDR="203.0.113.66",
        HTTP_X_FORWARDED_FOR="10.20.3.4",
    )
    _problem(response, 403, "address-not-allowed")


def test_a_doctors_session_cookie_cannot_push_documents(client: Client, vault_home: Path) -> None:
    # A cross-site form posting to the API with the doctor's cookies: no key, no entry.
    doctor = make_doctor()
    log_in(client, doctor)
    patient = make_patient()
    response = send(client, None, content=pdf(), meta=metadata(ins=patient.ins))
    _problem(response, 401, "unauthorized")
    _nothing_stored(vault_home)


def test_api_key_cannot_read_documents(client: Client, lab: tuple[ApiKey, str]) -> None:
    _key, text = lab
    patient = make_patient()
    secret = b"%PDF-1.4\nSECRET-RESULT hemoglobine 9.1\n%%EOF\n"
    document = make_document(patient, secret)
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {text}", "HTTP_X_API_KEY": text}
    paths = [
        f"/documents/{document.pk}/",
        f"/documents/{document.pk}/content",
        f"/documents/{document.pk}/download",
        f"/patients/{patient.public_id}/",
        "/",
        URL,
        f"{URL}/{document.pk}",
        f"/api/v1/documents/{document.pk}/content",
        "/fhir/Binary/" + document.pk,
    ]
    for path in paths:
        for method in ("get", "head", "options"):
            response = getattr(client, method)(path, **auth)
            assert response.status_code in (302, 401, 403, 404, 405), (path, method)
            body = b"".join(response) if response.streaming else response.content
            assert b"SECRET-RESULT" not in body, path
            assert response.get("Content-Type", "") != "application/pdf", path
    get = client.get(URL, **auth)
    _problem(get, 405, "method-not-allowed")
    assert get["Allow"] == "POST"
    # No read was decided, let alone audited and served.
    touched = AuditEvent.objects.filter(document_id=document.pk)
    assert not touched.exclude(action__startswith="intake.").exists()
