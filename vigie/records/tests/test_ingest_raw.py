"""Differential: the ingest path's raw statements (`lib.rawsql.first_by`, `rawsql.insert`,
`rawsql.insert_many`) and its one audit append (`audit.log.together`) against the ORM calls
and one-by-one appends they replace. Same rows, same audit rows, or the shortcut is wrong."""

from __future__ import annotations

import contextlib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from vigie.audit import log as audit_log
from vigie.audit.models import AuditEvent
from vigie.audit.verify import verify
from vigie.intake.models import ApiKey
from vigie.intake.rest.testing import metadata, new_key, pdf, send
from vigie.lib import rawsql
from vigie.records.models import (
    Document,
    Patient,
    PendingDocument,
    SealedResults,
    new_document_id,
    results_label,
)
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    # Audit events on the calling thread, so they are visible inside the test's transaction.
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


def _stored(model: type[Model], pk: str) -> dict[str, Any]:
    """The row as the database holds it, read back through the ORM."""
    row: dict[str, Any] = dict(model._default_manager.filter(pk=pk).values().get())
    row.pop("id")
    if isinstance(row.get("wrapped_key"), memoryview):
        row["wrapped_key"] = bytes(row["wrapped_key"])
    return row


def _attributes(row: Model | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {f.attname: getattr(row, f.attname) for f in type(row)._meta.concrete_fields}


_STORED = {
    "kind": "imaging_report",
    "title": "Échographie abdominale — « contrôle »",
    "clinical_date": date(2026, 2, 28),
    "author": "",
    "source_system": "RIS-1",
    "content_type": "application/pdf",
    "size": 204_800,
    "sha256": "ab" * 32,
    "kek_id": "kek-2026",
    "wrapped_key": bytes(range(256)) + b"\x00\xff",
    "active_content": True,
    "content_warnings": ["JavaScript found", "ünïcode ✓", ""],
}


@pytest.mark.parametrize("received_at", [None, datetime(2026, 3, 1, 23, 59, 59, 999_999)])
def test_a_raw_insert_writes_the_row_create_writes(received_at: datetime | None) -> None:
    patient = make_patient()
    when = {} if received_at is None else {"received_at": timezone.make_aware(received_at)}
    by_orm = Document.objects.create(id=new_document_id(), patient=patient, **_STORED, **when)
    raw = Document(id=new_document_id(), patient=patient, **_STORED, **when)
    rawsql.insert(raw, connection)

    assert not raw._state.adding
    orm_row, raw_row = _stored(Document, by_orm.pk), _stored(Document, raw.pk)
    if received_at is None:  # a default: the moment each row was made
        assert abs(orm_row.pop("received_at") - raw_row.pop("received_at")).total_seconds() < 60
    assert raw_row == orm_row
    assert _attributes(Document.objects.get(pk=raw.pk)) == _attributes(raw)


def test_a_raw_insert_writes_the_pending_row_create_writes() -> None:
    fields = {
        **_STORED,
        "channel": "rest",
        "reason": "no patient has this INS here",
        "identifiers": {"ins": "185127512345678", "ipp": "4242"},
        "demographics": {"family_name": "N'GUYEN", "birth_date": "1985-03-14"},
    }
    by_orm = PendingDocument.objects.create(id=new_document_id(), **fields)
    raw = PendingDocument(id=new_document_id(), **fields)
    rawsql.insert(raw, connection)
    orm_row, raw_row = _stored(PendingDocument, by_orm.pk), _stored(PendingDocument, raw.pk)
    assert abs(orm_row.pop("received_at") - raw_row.pop("received_at")).total_seconds() < 60
    assert raw_row == orm_row


@pytest.mark.parametrize("attachment", [None, b"%PDF-1.7 \x00\xff sealed"])
def test_a_raw_insert_writes_the_sealed_results_save_writes(attachment: bytes | None) -> None:
    # records.batch writes a lab round's SealedResults raw; the single path saves them.
    fields = {
        "kek_id": "kek-2026",
        "wrapped_key": bytes(range(256)),
        "results": b"\x00sealed json\xff" * 40,
        "attachment": attachment,
    }
    by_orm = SealedResults(id=results_label(new_document_id()), **fields)
    by_orm.save(force_insert=True)
    raw = SealedResults(id=results_label(new_document_id()), **fields)
    rawsql.insert(raw, connection)
    assert not raw._state.adding
    orm_row, raw_row = _stored(SealedResults, by_orm.pk), _stored(SealedResults, raw.pk)
    assert abs(orm_row.pop("created_at") - raw_row.pop("created_at")).total_seconds() < 60
    for row in (orm_row, raw_row):
        for name in ("results", "attachment"):
            if isinstance(row.get(name), memoryview):
                row[name] = bytes(row[name])
    assert raw_row == orm_row


def test_a_raw_lookup_finds_what_first_finds() -> None:
    with_ins, without_ins = make_patient("MARTIN"), make_patient("DUPONT", with_ins=False)
    key, _text = new_key("labo-bio", networks=["10.0.0.0/8"])
    cases: list[tuple[type[Model], str, Any]] = [
        (Patient, "ins", with_ins.ins),
        (Patient, "ipp", with_ins.ipp),
        (Patient, "ipp", without_ins.ipp),
        (Patient, "ins", "185127512345678"),
        (Patient, "ipp", "nobody"),
        (Patient, "ipp", "IPP' OR '1'='1"),
        (ApiKey, "prefix", key.prefix),
        (ApiKey, "prefix", ""),
        (ApiKey, "prefix", "0badc0ffee00"),
    ]
    for model, name, value in cases:
        expected = model._default_manager.filter(**{name: value}).first()
        found = rawsql.first_by(model, name, value, connection)
        assert _attributes(found) == _attributes(expected), (model, name, value)
        assert found is None or found._state.adding is False


def test_a_raw_lookup_refuses_a_column_that_is_not_unique() -> None:
    with pytest.raises(ValueError, match="not unique"):
        rawsql.first_by(Patient, "family_name", "MARTIN", connection)


def _orm_first(model: type[Model], name: str, value: Any, conn: Any) -> Any:
    return model._default_manager.filter(**{name: value}).first()


def _orm_insert(row: Model, conn: Any) -> None:
    row.save(force_insert=True)


def _orm_insert_many(rows: list[Model], conn: Any) -> None:
    for row in rows:
        row.save(force_insert=True)


_MOMENT_OR_ROW = {"seq", "at", "hash", "prev_hash", "request_id", "document_id"}


def _received(
    client: Client, text: str, patient: Patient | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One REST ingest: the stored row and the audit rows it appended."""
    before = AuditEvent.objects.count()
    meta = metadata(ins=patient.ins) if patient else metadata(ipp="NOBODY-4242")
    response = send(client, text, content=pdf(), meta=meta, HTTP_USER_AGENT="lab/1")
    assert response.status_code == 202, response.content
    model: type[Model] = Document if patient else PendingDocument
    row = _stored(model, response.json()["id"])
    row.pop("received_at")
    row.pop("wrapped_key")  # a new random data key for every document
    fields = [f.attname for f in AuditEvent._meta.concrete_fields]
    events = []
    for event in AuditEvent.objects.order_by("seq").values(*fields)[before:]:
        for name in _MOMENT_OR_ROW:
            event.pop(name)
        extra = dict(event["extra"])
        for name in ("document_id", "pending_id"):
            extra.pop(name, None)
        event["extra"] = extra
        events.append(event)
    return row, events


@pytest.mark.parametrize("matched", [True, False], ids=["document", "pending"])
def test_an_ingest_stores_and_audits_what_the_orm_path_did(
    monkeypatch: pytest.MonkeyPatch, matched: bool
) -> None:
    _key, text = new_key("labo-bio")
    patient = make_patient("MARTINEAU") if matched else None
    client = Client()
    fast = _received(client, text, patient)

    with monkeypatch.context() as before:
        before.setattr(rawsql, "first_by", _orm_first)
        before.setattr(rawsql, "insert", _orm_insert)
        before.setattr(rawsql, "insert_many", _orm_insert_many)
        before.setattr(audit_log, "together", contextlib.nullcontext)
        slow = _received(client, text, patient)

    assert fast == slow
    actions = [e["action"] for e in fast[1]]
    if matched:
        assert actions == ["intake.received", "intake.document.stored"]
    else:
        assert actions == ["intake.pending", "intake.received"]
    assert verify().ok


def test_a_raw_insert_of_a_row_with_an_automatic_key_matches_create() -> None:
    # The MLLP path writes its ReceivedMessage raw: the database assigns the id, as with
    # create() (PostgreSQL refuses an explicit NULL in an identity column).
    from vigie.intake.models import ReceivedMessage

    at = timezone.now()
    fields = {"channel": "hl7", "source": "LAB|APP^FAC", "received_at": at, "pending_id": ""}
    orm = ReceivedMessage.objects.create(control_id="ORM-1", document_id="d1", **fields)
    raw = ReceivedMessage(control_id="RAW-1", document_id="d1", **fields)
    rawsql.insert(raw, connection)
    rows = {r["control_id"]: r for r in ReceivedMessage.objects.values().order_by("control_id")}
    assert rows["RAW-1"]["id"] > 0
    assert rows["RAW-1"]["id"] != orm.pk
    for row in rows.values():
        del row["id"], row["control_id"]
    assert rows["RAW-1"] == rows["ORM-1"]


def _pending_fields() -> dict[str, Any]:
    return {
        **_STORED,
        "channel": "hl7",
        "reason": "no patient has this IPP here",
        "identifiers": {"ipp": "4242", "ipp_source": "LAB"},
        "demographics": {"family_name": "N'GUYEN", "birth_date": "1985-03-14"},
    }


def _results_fields(n: int) -> dict[str, Any]:
    attachment = None if n % 2 else b"%PDF-1.7 \x00\xff" + bytes([n % 256])
    results = b"\x00sealed json\xff" + str(n).encode()
    return {
        "kek_id": "kek-2026",
        "wrapped_key": bytes(range(n % 256)),
        "results": results,
        "attachment": attachment,
    }


def _comparable(model: type[Model], pk: str) -> dict[str, Any]:
    """The stored row without its own id and its moment of creation (a default: each row's
    own), binary columns as bytes."""
    row = _stored(model, pk)
    for moment in ("received_at", "created_at"):
        row.pop(moment, None)
    return {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row.items()}


def test_a_multi_row_insert_writes_the_rows_create_writes() -> None:
    # records.batch writes a round's rows with one INSERT per table: every model of a round,
    # mixed in one call, each row equal to the one the ORM writes for the same fields.
    from vigie.intake.models import ReceivedMessage

    patient = make_patient()
    when = timezone.make_aware(datetime(2026, 3, 1, 23, 59, 59, 999_999))
    cases: list[tuple[type[Model], dict[str, Any]]] = [
        (Document, {"patient": patient, **_STORED}),
        (Document, {"patient": patient, **_STORED, "received_at": when, "title": "« 2 »"}),
        (PendingDocument, _pending_fields()),
        (SealedResults, _results_fields(1)),
        (SealedResults, _results_fields(2)),
    ]
    orm_ids, raw_rows = [], []
    for model, fields in cases:
        key = results_label if model is SealedResults else (lambda pk: pk)
        orm = model(id=key(new_document_id()), **fields)
        orm.save(force_insert=True)
        orm_ids.append(orm.pk)
        raw_rows.append(model(id=key(new_document_id()), **fields))
    received = {"channel": "hl7", "source": "LAB", "received_at": when, "pending_id": ""}
    by_orm = ReceivedMessage.objects.create(control_id="ORM-1", document_id="d1", **received)
    # Its key is automatic: left to the database, as create() leaves it.
    raw_rows.append(ReceivedMessage(control_id="RAW-1", document_id="d1", **received))
    rawsql.insert_many(raw_rows, connection)

    assert all(not row._state.adding for row in raw_rows)
    for (model, _fields), orm_id, raw in zip(cases, orm_ids, raw_rows[:-1], strict=True):
        assert _comparable(model, raw.pk) == _comparable(model, orm_id), model
    raw_received = ReceivedMessage.objects.get(control_id="RAW-1")
    assert raw_received.pk not in (None, by_orm.pk)
    names = [f.attname for f in ReceivedMessage._meta.concrete_fields]
    orm_values = {n: getattr(by_orm, n) for n in names if n not in ("id", "control_id")}
    raw_values = {n: getattr(raw_received, n) for n in names if n not in ("id", "control_id")}
    assert raw_values == orm_values


def test_a_multi_row_insert_is_one_statement_per_table_under_the_parameter_limit() -> None:
    from django.test.utils import CaptureQueriesContext

    # 400 rows of 6 columns: 2,400 parameters, over SQLite's 999 (PostgreSQL's is higher).
    rows = [
        SealedResults(id=results_label(new_document_id()), **_results_fields(n)) for n in range(400)
    ]
    patient = make_patient()
    documents = [Document(id=new_document_id(), patient=patient, **_STORED) for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        rawsql.insert_many([*documents, *rows], connection)
    per_statement = connection.ops.bulk_batch_size(list(SealedResults._meta.concrete_fields), rows)
    expected = 1 + -(-400 // per_statement)
    assert len([q for q in queries if q["sql"].startswith("INSERT")]) == expected
    assert SealedResults.objects.count() == 400
    assert Document.objects.count() == 3
    stored = {r.pk: r for r in SealedResults.objects.all()}
    for row in rows:
        assert bytes(stored[row.pk].results) == row.results
        assert stored[row.pk].attachment == row.attachment


def test_a_duplicate_in_a_multi_row_insert_stores_none_of_its_statement() -> None:
    # A round whose ReceivedMessage collides (a resend taken meanwhile) must fail as a whole,
    # so that records.batch retries unit by unit: no partial round is left behind.
    from django.db import IntegrityError, transaction

    from vigie.intake.models import ReceivedMessage

    ReceivedMessage.objects.create(
        channel="hl7", source="LAB", control_id="TAKEN", document_id="d0", pending_id=""
    )
    rows = [
        ReceivedMessage(channel="hl7", source="LAB", control_id=c, document_id="d1", pending_id="")
        for c in ("NEW-1", "TAKEN", "NEW-2")
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        rawsql.insert_many(rows, connection)
    assert list(ReceivedMessage.objects.values_list("control_id", flat=True)) == ["TAKEN"]


def test_a_multi_row_insert_of_nothing_sends_nothing() -> None:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        rawsql.insert_many([], connection)
    assert len(queries) == 0


def test_a_raw_lookup_of_many_finds_what_filter_in_finds() -> None:
    patients = [make_patient("MARTIN"), make_patient("DUPONT", with_ins=False)]
    cases: list[tuple[str, list[Any]]] = [
        ("ipp", [p.ipp for p in patients] + ["nobody", "IPP' OR '1'='1"]),
        ("ins", [patients[0].ins, "185127512345678"]),
        ("ipp", []),
        # More values than one statement takes: several statements, one answer.
        ("ipp", [f"X{n}" for n in range(1_100)] + [patients[1].ipp]),
    ]
    for name, values in cases:
        expected = Patient.objects.filter(**{f"{name}__in": values})
        found = rawsql.many_by(Patient, name, values, connection)
        by_pk = {p.pk: _attributes(p) for p in found}
        assert len(by_pk) == len(found)
        assert by_pk == {p.pk: _attributes(p) for p in expected}, (name, values[:3])
        assert all(p._state.adding is False for p in found)
    with pytest.raises(ValueError, match="not unique"):
        rawsql.many_by(Patient, "family_name", ["MARTIN"], connection)


def _every_concrete_field() -> list[Any]:
    return [
        pytest.param(field, id=f"{model.__name__}.{field.name}")
        for model in apps.get_models()
        for field in model._meta.concrete_fields
    ]


@pytest.mark.parametrize("field", _every_concrete_field())
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        st.text(max_size=40),
        st.integers(min_value=-(2**62), max_value=2**62),
        st.booleans(),
        st.none(),
    )
)
def test_a_value_sent_as_is_is_what_the_field_itself_would_send(field: Any, value: Any) -> None:
    """The insert plan skips a field's conversion only for values the conversion gives back
    unchanged: for every concrete field of every model, on this database, a value of a type
    the plan sends as is equals (and has the type of) what `get_db_prep_save` sends."""
    plan = rawsql.insert_plan(field.model, connection, without_pk=False)
    (step,) = (s for s in plan.steps if s.field is field)
    if not (type(value) in step.as_is or (value is None and step.none_as_is)):
        return  # the plan asks the field: nothing skipped to compare
    sent = field.get_db_prep_save(value, rawsql.resolved(connection))
    assert sent == value
    assert type(sent) is type(value)
