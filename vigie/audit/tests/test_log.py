from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import OperationalError, connection, transaction
from django.http import HttpRequest
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from vigie.accounts.models import Role, User
from vigie.audit import chain
from vigie.audit import log as audit_log
from vigie.audit.head import APPEND_LOCK
from vigie.audit.log import AuditHeadBehind, AuditUnavailable, record
from vigie.audit.models import AuditEvent, AuditHead
from vigie.audit.verify import verify
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db


def _doctor(username: str = "dr.martin") -> User:
    return User.objects.create_user(
        username=username, role=Role.DOCTOR, first_name="Jeanne", last_name="Martin"
    )


def test_it_records_who_saw_what_from_where(vault_home: Path) -> None:
    doctor = _doctor()
    patient = make_patient("MARTINEAU")
    document = make_document(patient)
    request = RequestFactory().get(
        "/documents/x",
        REMOTE_ADDR="192.0.2.7",
        HTTP_USER_AGENT="Firefox/140",
        HTTP_X_REQUEST_ID="req-42",
    )
    request.user = doctor

    event = record("document.read", request=request, document=document)

    stored = AuditEvent.objects.get(seq=event.seq)
    assert (stored.actor_id, stored.actor_username, stored.actor_role) == (
        doctor.pk,
        "dr.martin",
        "doctor",
    )
    assert stored.actor_display == "Jeanne Martin"
    assert (stored.patient_id, stored.patient_ipp, stored.document_id) == (
        patient.pk,
        patient.ipp,
        document.pk,
    )
    assert (stored.source_ip, stored.user_agent) == ("192.0.2.7", "Firefox/140")
    # The request id is Vigie's own; the client's is kept beside it, for correlation only.
    assert re.fullmatch(r"[0-9a-f]{32}", stored.request_id)
    assert stored.extra == {"client_request_id": "req-42"}
    assert stored.outcome == "success"


def test_it_gives_one_request_one_generated_id() -> None:
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID="bad id\nX-Injected: 1")
    first = record("document.read", request=request)
    second = record("document.download", request=request)
    assert first.request_id == second.request_id
    assert len(first.request_id) == 32
    assert "\n" not in first.request_id


def test_attack_it_refuses_a_client_chosen_request_id() -> None:
    # Two requests sending the same X-Request-ID are still two requests: the decoy alarm
    # counts one touch per request id, so a shared client id would mute every later touch.
    first = record("document.read", request=RequestFactory().get("/", HTTP_X_REQUEST_ID="x"))
    second = record("document.read", request=RequestFactory().get("/", HTTP_X_REQUEST_ID="x"))
    assert first.request_id != second.request_id
    assert "x" not in {first.request_id, second.request_id}
    assert first.extra["client_request_id"] == second.extra["client_request_id"] == "x"


def test_it_keeps_the_clients_request_id_short_and_clean() -> None:
    request = RequestFactory().get(
        "/", HTTP_X_REQUEST_ID="<script>bad id\r\nX-Injected: 1</script>" + "a" * 500
    )
    event = record("document.read", request=request, extra={"n": 1})
    stored = AuditEvent.objects.get(seq=event.seq)
    given = stored.extra["client_request_id"]
    assert len(given) == 64
    assert re.fullmatch(r"[A-Za-z0-9._:-]+", given)
    assert given.startswith("scriptbadidX-Injected:1")
    assert stored.extra["n"] == 1
    # No header, nothing beside Vigie's id.
    plain = record("document.read", request=RequestFactory().get("/"))
    assert "client_request_id" not in plain.extra
    assert verify().ok


def test_it_keeps_the_actor_after_the_account_is_deleted() -> None:
    doctor = _doctor("dr.leaving")
    event = record("document.read", actor=doctor)
    doctor.delete()
    stored = AuditEvent.objects.get(seq=event.seq)
    assert stored.actor_username == "dr.leaving"
    assert stored.actor_id is not None


def test_it_numbers_events_without_gaps_and_chains_them() -> None:
    events = [record("document.read", extra={"n": n}) for n in range(5)]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == chain.GENESIS_HEX
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    head = AuditHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (5, events[-1].hash)
    assert verify().ok


def test_it_joins_the_callers_transaction_and_rolls_back_with_it() -> None:
    record("login.success")

    def failing_action() -> None:
        with transaction.atomic():
            record("access.grant")
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        failing_action()
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["login.success"]
    # The rolled-back number is reused: no gap.
    assert record("access.grant").seq == 2
    assert verify().ok


def test_it_writes_the_ingest_event_inside_the_ingest_transaction(vault_home: Path) -> None:
    patient = make_patient()
    document = make_document(patient)
    event = AuditEvent.objects.get(action="intake.document.stored")
    assert event.document_id == document.pk
    assert event.patient_ipp == patient.ipp
    assert event.extra["source_system"] == "LABO-TEST"


def test_it_refuses_malformed_actions_outcomes_and_floats() -> None:
    with pytest.raises(ValueError, match="namespaced"):
        record("Document Read")
    with pytest.raises(ValueError, match="outcome"):
        record("document.read", outcome="maybe")
    with pytest.raises(TypeError, match="float"):
        record("document.read", extra={"score": 0.5})
    assert not AuditEvent.objects.exists()


def test_it_stores_hostile_text_safely_and_still_verifies() -> None:
    request = RequestFactory().get("/", HTTP_USER_AGENT="A" * 5000 + "\x00")
    event = record(
        "document.read",
        request=request,
        reason="nul\x00 and surrogate \ud800 and é",
        extra={"nested": {"b": [1, "\x00"], "a": None}, "big": 2**62},
    )
    stored = AuditEvent.objects.get(seq=event.seq)
    assert len(stored.user_agent) == 256
    assert "\x00" not in stored.reason
    assert verify().ok


def test_it_rebuilds_a_missing_head_from_the_last_event() -> None:
    record("document.read")
    last = record("document.read")
    AuditHead.objects.all().delete()
    assert record("document.read").prev_hash == last.hash
    assert verify().ok


def test_a_lost_head_update_is_named_and_never_forks_the_chain() -> None:
    # What a database that lost a committed write looks like: the head one event behind.
    record("document.read")
    last = record("document.read")
    AuditHead.objects.filter(pk=1).update(seq=last.seq - 1, hash=last.prev_hash)
    with pytest.raises(
        AuditHeadBehind, match=f"event {last.seq - 1} is the last but event {last.seq} exists"
    ):
        record("document.read")
    with transaction.atomic(), pytest.raises(AuditUnavailable):
        record("document.read")
    # Nothing was appended, and the verifier names the same inconsistency.
    assert AuditEvent.objects.count() == 2
    result = verify()
    assert [p.kind for p in result.problems] == ["head mismatch"]


def test_unwritable_database_makes_record_raise_audit_unavailable() -> None:
    if connection.vendor == "sqlite":
        record("document.read")
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA query_only = ON")
        try:
            with pytest.raises(AuditUnavailable):
                record("document.read")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA query_only = OFF")
    else:
        # Another session holds the append lock; we give up after 100 ms instead of waiting.
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", [APPEND_LOCK])
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '100ms'")
            with pytest.raises(AuditUnavailable):
                record("document.read")
            other.execute("SELECT pg_advisory_unlock(%s)", [APPEND_LOCK])
        record("document.read")
    # The caller's transaction is still usable, and the chain is intact.
    assert AuditEvent.objects.count() == 1
    assert verify().ok


@pytest.mark.usefixtures("audit_committing")
@pytest.mark.parametrize("group_commit", [True, False])
def test_it_commits_before_returning_outside_a_transaction(settings, group_commit: bool) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = group_commit
    assert not connection.in_atomic_block
    event = record("document.read")
    # Visible from another connection: committed, not merely written.
    seen: list[bool] = []

    def look() -> None:
        from django.db import connection as other

        seen.append(AuditEvent.objects.filter(seq=event.seq, hash=event.hash).exists())
        other.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    assert seen == [True]


@pytest.mark.usefixtures("audit_committing")
def test_group_commit_shares_commits_between_concurrent_readers(monkeypatch, settings) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = True
    batches: list[int] = []
    real = audit_log.append_batch

    def counting(events: list[AuditEvent], **kwargs: bool) -> audit_log.HeadState:
        batches.append(len(events))
        return real(events, **kwargs)

    monkeypatch.setattr(audit_log, "append_batch", counting)
    results: list[int] = []
    lock = threading.Lock()

    def reader() -> None:
        for _ in range(25):
            event = record("document.read")
            with lock:
                results.append(event.seq)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 201))
    assert sum(batches) == 200
    assert len(batches) < 200, "every event got its own commit"
    assert verify().ok


@pytest.mark.usefixtures("audit_committing")
@pytest.mark.parametrize("group_commit", [True, False])
def test_lost_connection_makes_every_waiting_reader_get_audit_unavailable(
    monkeypatch, settings, group_commit: bool
) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = group_commit

    def broken(events: list[AuditEvent], **kwargs: bool) -> audit_log.HeadState:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(audit_log, "append_batch", broken)
    with pytest.raises(AuditUnavailable, match="server closed"):
        record("document.read")
    monkeypatch.undo()
    # Once the database is back, appends resume with no gap.
    assert record("document.read").seq == 1


# --- together(): several events of one action function, one append -------------------------

_CHAINED_BUT_TIMED = {"at", "hash", "prev_hash"}


def _rows() -> list[dict[str, object]]:
    """Every event as stored, but for what depends on the moment it was appended."""
    fields = [f.attname for f in AuditEvent._meta.concrete_fields]
    return [
        {name: value for name, value in row.items() if name not in _CHAINED_BUT_TIMED}
        for row in AuditEvent.objects.order_by("seq").values(*fields)
    ]


def _an_action_function(request: HttpRequest | None) -> None:
    record("intake.received", request=request, extra={"key": "labo", "n": 1})
    record("intake.document.stored", request=None, reason="", extra={"size": 42})
    record("access.grant", outcome="denied", reason="why not")


class _Undo(Exception):
    pass


def _rolled_back(action: Callable[[], None]) -> list[dict[str, object]]:
    """The rows `action` appends one by one, in a transaction then rolled back."""
    seen: list[dict[str, object]] = []

    def run() -> None:
        with transaction.atomic():
            with transaction.atomic():
                action()
            seen.extend(_rows())
            raise _Undo

    with pytest.raises(_Undo):
        run()
    return seen


def test_events_recorded_together_are_the_rows_recorded_one_by_one() -> None:
    """Differential: the same events, one append each or one append for all, give the same
    rows (numbers included) and a chain that verifies."""
    request = RequestFactory().get("/x", REMOTE_ADDR="192.0.2.9", HTTP_USER_AGENT="lab/1")
    record("login.success")
    # The one-by-one run is rolled back (audit rows cannot be deleted): both start from
    # the same head.
    one_by_one = _rolled_back(lambda: _an_action_function(request))
    with transaction.atomic(), audit_log.together():
        _an_action_function(request)
    together = _rows()

    assert len(together) == 4
    assert together == one_by_one
    assert verify().ok


def test_events_recorded_together_cost_one_head_read_and_one_insert() -> None:
    record("login.success")
    with CaptureQueriesContext(connection) as queries, transaction.atomic(), audit_log.together():
        _an_action_function(None)
    # On PostgreSQL the INSERT shares its statement with the head's move (WITH ... UPDATE).
    inserts = [q for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    head_reads = [q for q in queries.captured_queries if "MAX(" in q["sql"]]
    assert (len(inserts), len(head_reads)) == (1, 1)
    assert [e.seq for e in AuditEvent.objects.order_by("seq")] == [1, 2, 3, 4]


def test_events_recorded_together_roll_back_with_the_block() -> None:
    record("login.success")

    def failing_action() -> None:
        with transaction.atomic(), audit_log.together():
            record("access.grant")
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        failing_action()
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["login.success"]
    assert AuditHead.objects.get(pk=1).seq == 1
    assert verify().ok


def test_an_event_in_a_savepoint_rolled_back_inside_together_is_not_appended() -> None:
    with transaction.atomic(), audit_log.together():
        record("intake.received")
        try:
            with transaction.atomic():
                record("access.grant")
                raise RuntimeError("this part only fails")
        except RuntimeError:
            pass
        record("intake.document.stored")
    assert list(AuditEvent.objects.order_by("seq").values_list("action", flat=True)) == [
        "intake.received",
        "intake.document.stored",
    ]
    assert verify().ok


def test_together_fails_closed_when_the_append_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(events: object, **kwargs: bool) -> None:
        raise OperationalError("database is locked")

    monkeypatch.setattr(audit_log, "append_batch", broken)
    with pytest.raises(AuditUnavailable), transaction.atomic(), audit_log.together():
        record("intake.received")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_together_outside_a_transaction_is_a_mistake() -> None:
    with pytest.raises(RuntimeError, match="transaction"), audit_log.together():
        pass


def test_an_append_on_postgresql_moves_the_head_in_the_inserts_statement() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no INSERT in a WITH clause: two statements there")
    record("login.success")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        record("document.read")
    writes = [
        q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"] or "UPDATE" in q["sql"]
    ]
    assert len(writes) == 1
    assert writes[0].startswith("WITH appended AS (INSERT INTO")
    head = AuditHead.objects.get(pk=1)
    last = AuditEvent.objects.order_by("-seq").first()
    assert last is not None
    assert (head.seq, head.hash) == (last.seq, last.hash) == (2, last.hash)
    assert verify().ok
