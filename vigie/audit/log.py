"""`record()`: the one way to write an audit event.

Durability — when `record()` returns, the event is as durable as the caller's situation allows:

* Called outside any transaction (a document read): the event is committed, and fsynced by
  the database, before `record()` returns. The caller may then disclose.
* Called inside `transaction.atomic()` (an action function changing state, an ingest): the
  event joins that transaction, so the change and its event commit together or not at all.
  It is durable once the caller's outermost block commits.

Fail closed — if the event cannot be written (read-only or locked database, lost connection,
missing table), `record()` raises `AuditUnavailable` and the caller must not disclose (the
portal answers 503). Programming mistakes (an unknown outcome, a float in `extra`) raise
`ValueError`/`TypeError` instead: they must fail tests, not look like an outage.

Serialisation — appends take the append lock, read the head row (last seq and hash) and
insert with seq + 1, in the same transaction, so sequence numbers are gapless and the chain
never forks, across threads and processes:

* PostgreSQL: `pg_advisory_xact_lock(APPEND_LOCK)`, released at commit or rollback;
* SQLite: the database-wide write lock that `BEGIN IMMEDIATE` takes (the settings use
  `transaction_mode=IMMEDIATE`), held until commit.

Group commit — outside a transaction, events go through a per-process appender thread (see
`_Appender`): request threads queue their event and wait; the appender writes everything
queued in one transaction, one commit, one fsync, then wakes each waiter (or hands each the
same `AuditUnavailable`). Under load a read costs a share of an fsync, and still no read
returns before its own event is durable. Across processes the append lock serialises
batches. `VIGIE_AUDIT_GROUP_COMMIT=false` commits each event on the calling thread instead.

Hook — `event_recorded` is sent once an event is durable (right away outside a transaction,
at the caller's commit inside one; never for a rolled-back event), on the recording thread,
with `event=` and `request=` (or None). Receivers cannot break `record()`: their errors are
logged. The canary tripwire listens here, so any path that audits a touch of a decoy alarms.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.dispatch import Signal
from django.utils import timezone

from vigie.audit import chain

# Re-exported (`as`): callers catch what record() raises, and read what append_batch()
# returns, from the module they call.
from vigie.audit.head import AuditHeadBehind as AuditHeadBehind
from vigie.audit.head import AuditUnavailable as AuditUnavailable
from vigie.audit.head import HeadState as HeadState
from vigie.audit.head import lock_and_read_head
from vigie.audit.models import AuditEvent, AuditHead, Outcome
from vigie.lib import rawsql

if TYPE_CHECKING:
    from django.http import HttpRequest

    from vigie.accounts.models import User

logger = logging.getLogger(__name__)

_ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
# What a client's own X-Request-ID may keep: the characters of the usual id formats (UUIDs,
# a proxy's hex or base64 ids), so that a header cannot smuggle line breaks or markup into
# reports, exports and syslog.
_CLIENT_REQUEST_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
_CLIENT_REQUEST_ID_LIMIT = 64
_REQUEST_ID_KEY = "VIGIE_REQUEST_ID"
# The longest a caller waits for the appender before giving up (and not disclosing).
_WAIT_SECONDS = 30.0
_MAX_BATCH = 500
# Built once: `Outcome.values` rebuilds its list (and every label) on each read, and every
# event is checked against it.
_OUTCOMES = frozenset(Outcome.values)


class Patient(Protocol):
    """What an event copies of a patient (records sits above audit: no import of its model)."""

    @property
    def pk(self) -> Any: ...

    @property
    def ipp(self) -> str: ...


class Document(Protocol):
    """What an event copies of a document: its id, and its patient when none is given."""

    @property
    def pk(self) -> Any: ...

    @property
    def patient(self) -> Patient: ...


# Sent after an event is durable, with `event=` (the AuditEvent) and `request=` (or None).
event_recorded = Signal()


def _announce(event: AuditEvent, request: HttpRequest | None) -> None:
    # Robust: the event is already durable, so a failing receiver must not turn a recorded
    # read into an error for the caller.
    for receiver, result in event_recorded.send_robust(
        sender=AuditEvent, event=event, request=request
    ):
        if isinstance(result, Exception):
            logger.error("audit receiver %r failed for %s", receiver, event.action, exc_info=result)


def record(
    action: str,
    *,
    request: HttpRequest | None = None,
    actor: User | None = None,
    patient: Patient | None = None,
    document: Document | None = None,
    outcome: str = "success",
    reason: str = "",
    extra: dict[str, Any] | None = None,
    source_ip: str = "",
) -> AuditEvent:
    """Append one event to the audit chain; see the module docstring for durability.

    `source_ip` is for events written after their requests (counted refusals): a request's
    own address wins when there is one.
    """
    event = _build(
        action,
        request=request,
        actor=actor,
        patient=patient,
        document=document,
        outcome=outcome,
        reason=reason,
        extra=extra,
    )
    if request is None and source_ip:
        event.source_ip = chain.clean_text(source_ip, 45)
    if connection.in_atomic_block:
        pending = getattr(_together, "events", None)
        if pending is not None and len(connection.atomic_blocks) == _together.depth:
            # Inside `together()`, at its own level: appended with the block's other events
            # when it ends. (In a deeper savepoint, which may roll back alone, the event is
            # appended at once as below, so that it rolls back with its savepoint.)
            pending.append((event, request))
            return event
        try:
            # A savepoint, so a failed insert leaves the caller's transaction usable for its
            # own error handling (it will not commit a change without its event: we raise).
            with transaction.atomic():
                head = append_batch([event])
        except DatabaseError as exc:
            raise AuditUnavailable(f"audit log unavailable: {exc}") from exc
        transaction.on_commit(lambda: _after_commit(head))
        transaction.on_commit(lambda: _announce(event, request))
        return event
    if settings.VIGIE_AUDIT_GROUP_COMMIT:
        _appender().submit(event)
        _announce(event, request)
        return event
    try:
        head = append_committed([event])
    except DatabaseError as exc:
        raise AuditUnavailable(f"audit log unavailable: {exc}") from exc
    _after_commit(head)
    _announce(event, request)
    return event


_together = threading.local()


@contextmanager
def together() -> Iterator[None]:
    """Append every event `record()`ed in this block as one batch when the block ends.

    For an action function that writes several events in one transaction (an ingest: the
    channel's `intake.received` and `intake.document.stored`): one head read, one INSERT and
    one head update instead of one of each per event, since on the ingest path each append
    cost more CPU than the row it audits. Same durability as `record()` inside a transaction:
    the events join the caller's transaction, in the order recorded, and commit with it.

    Only inside `transaction.atomic()` (outside one, there is no commit to share). Until the
    block ends the events have no `seq` yet. If the block raises, its events are dropped
    (the caller's transaction is rolling back); if the append fails, `AuditUnavailable` is
    raised at the end of the block and the caller's change must not commit, as with
    `record()`. Nested blocks join the outermost one; an event recorded in a savepoint
    opened inside the block is appended at once (it must roll back with its savepoint), so it
    precedes the block's events in the chain.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit.log.together() needs an open transaction.atomic() block")
    if getattr(_together, "events", None) is not None:
        yield
        return
    events: list[tuple[AuditEvent, HttpRequest | None]] = []
    _together.events, _together.depth = events, len(connection.atomic_blocks)
    try:
        yield
    finally:
        _together.events = None
    if not events:
        return
    try:
        # A savepoint, as in `record()`: a failed insert leaves the caller's transaction
        # usable for its own error handling.
        with transaction.atomic():
            head = append_batch([event for event, _request in events])
    except DatabaseError as exc:
        raise AuditUnavailable(f"audit log unavailable: {exc}") from exc
    transaction.on_commit(lambda: _after_commit(head))
    for event, request in events:
        transaction.on_commit(functools.partial(_announce, event, request))


def _build(
    action: str,
    *,
    request: HttpRequest | None,
    actor: User | None,
    patient: Patient | None,
    document: Document | None,
    outcome: str,
    reason: str,
    extra: dict[str, Any] | None,
) -> AuditEvent:
    if len(action) > 64 or not _ACTION_RE.fullmatch(action):
        raise ValueError(f"audit action {action!r} is not a namespaced tag like document.read")
    if outcome not in _OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r} is not one of {', '.join(Outcome.values)}")
    details = dict(extra or {})
    if request is not None:
        given = client_request_id(request)
        if given:
            # Beside Vigie's own id, for correlation with the client's or the proxy's logs;
            # chained like the rest of `extra`, and never used to decide anything.
            details["client_request_id"] = given
    event = AuditEvent(
        action=action,
        outcome=outcome,
        reason=chain.clean_text(reason, 4000),
        extra=chain.clean_json(details),
    )
    if request is not None:
        meta = request.META
        event.source_ip = chain.clean_text(str(meta.get("REMOTE_ADDR") or ""), 45)
        event.user_agent = chain.clean_text(str(meta.get("HTTP_USER_AGENT") or ""), 256)
        event.request_id = request_id(request)
        if actor is None:
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                actor = user
    if actor is not None:
        event.actor_id = actor.pk
        event.actor_username = chain.clean_text(actor.get_username(), 150)
        event.actor_role = chain.clean_text(str(getattr(actor, "role", "") or ""), 16)
        event.actor_display = chain.clean_text(actor.get_full_name() or "", 255)
    if document is not None:
        event.document_id = str(document.pk)
        if patient is None:
            patient = document.patient
    if patient is not None:
        event.patient_id = patient.pk
        event.patient_ipp = chain.clean_text(patient.ipp, 64)
    return event


def request_id(request: HttpRequest) -> str:
    """The request's id, made up here (random, 32 hex digits) whatever the client sends.

    Kept on the request, so every event of one request carries the same id. Never the
    client's X-Request-ID: the decoy alarm counts one touch per request id, and a value the
    client chooses would let it pass every request off as one (one alarm, then silence).
    The client's own id is kept beside it, see `client_request_id`.
    """
    known = request.META.get(_REQUEST_ID_KEY)
    if isinstance(known, str):
        return known
    rid = uuid.uuid4().hex
    request.META[_REQUEST_ID_KEY] = rid
    return rid


def client_request_id(request: HttpRequest) -> str:
    """The client's (or its proxy's) X-Request-ID, for the record only: "" when absent.

    Cut to 64 characters and stripped of anything outside [A-Za-z0-9._:-]. Whoever sends it
    chooses it, so it correlates logs and never decides anything.
    """
    given = str(request.META.get("HTTP_X_REQUEST_ID") or "")[: _CLIENT_REQUEST_ID_LIMIT * 4]
    return _CLIENT_REQUEST_ID_UNSAFE.sub("", given)[:_CLIENT_REQUEST_ID_LIMIT]


def event_fields(event: AuditEvent) -> tuple[Any, ...]:
    """The chained fields of `event`, in `chain.FIELDS` order, `at` canonical."""
    return (
        event.seq,
        chain.canonical_time(event.at),
        event.action,
        event.actor_id,
        event.actor_username,
        event.actor_role,
        event.actor_display,
        event.patient_id,
        event.patient_ipp,
        event.document_id,
        event.outcome,
        event.source_ip,
        event.user_agent,
        event.request_id,
        event.reason,
    )


def append_batch(events: list[AuditEvent], *, asynchronous_commit: bool = False) -> HeadState:
    """Number, chain and insert `events`; the caller holds an open transaction.

    `asynchronous_commit`: PostgreSQL only, for `append_committed` (see there)."""
    seq, prev_hex, checkpoint_seq, checkpoint_at = lock_and_read_head(
        asynchronous_commit=asynchronous_commit
    )
    prev = bytes.fromhex(prev_hex)
    for event in events:
        seq += 1
        event.seq = seq
        event.at = timezone.now()
        event.prev_hash = prev.hex()
        prev = chain.link(prev, event_fields(event), chain.canonical_extra(event.extra))
        event.hash = prev.hex()
    _insert(events, seq, prev.hex())
    return HeadState(seq, prev.hex(), checkpoint_seq, checkpoint_at)


def append_committed(events: list[AuditEvent]) -> HeadState:
    """`append_batch` in a transaction of its own, durable (fsynced) when this returns.

    PostgreSQL: the append lock is not held across the WAL flush. The append transaction
    commits with `synchronous_commit = off` (its commit record is written, the lock is
    released, the next batch may take it at once), then a second, synchronous transaction
    that writes one WAL record (a transactional logical message, which any role may emit at
    any wal_level) commits, and its flush covers every earlier record, ours included. So
    this batch's flush can be shared with other processes' batches instead of each waiting
    for the previous one's fsync under the lock.

    The chain is not weakened: the lock still serialises numbering and hashing exactly as
    before, and the WAL is one ordered stream, so a crash can only lose a suffix of batches
    committed after the last flush — never one in the middle, so no gap and no fork — and
    none of those was disclosed: every caller waits here for the flush that covers its own
    commit record. SQLite is unchanged (synchronous=FULL, one commit).
    """
    if connection.vendor != "postgresql":
        with transaction.atomic():
            return append_batch(events)
    with transaction.atomic():
        head = append_batch(events, asynchronous_commit=True)
    with connection.cursor() as cursor:
        # One statement in autocommit, so its own transaction: no BEGIN or COMMIT round
        # trips. `synchronous_commit` ON explicitly, whatever the server's default, for
        # that transaction (a local setting lasts until its commit record is flushed):
        # this commit is the durability point.
        cursor.execute(
            "SELECT set_config('synchronous_commit', 'on', true),"
            " pg_logical_emit_message(true, 'vigie.audit.flush', '')"
        )
    return head


def _insert(events: list[AuditEvent], seq: int, hash_hex: str) -> None:
    """One INSERT of every event and the head's move, as raw statements.

    Not `bulk_create` + `update()`: the ORM spent more CPU building those two statements than
    the database spends running them, on the path every read waits for. Values are prepared
    by each field (`get_db_prep_save`), exactly as the ORM would send them.
    """
    # This thread's connection itself, not the `connection` proxy: every field's conversion
    # below reads it, and each read through the proxy is a thread-local lookup.
    conn = connections[DEFAULT_DB_ALIAS]
    plan = rawsql.insert_plan(AuditEvent, conn, without_pk=False)
    rows = [plan.values(event, conn) for event in events]
    columns, one = plan.columns, plan.one
    event_table, head_table = plan.table, rawsql.table(AuditHead, conn)
    head_seq, head_hash = (rawsql.column(AuditHead, n, conn) for n in ("seq", "hash"))
    # As many rows per INSERT as the backend takes parameters (bulk imports pass thousands).
    per_statement = plan.per_statement(conn, events)
    move_head = (
        f"UPDATE {head_table} SET {head_seq} = %s, {head_hash} = %s"  # noqa: S608
        f" WHERE {rawsql.column(AuditHead, 'id', conn)} = 1"
    )
    # PostgreSQL runs the last INSERT and the head's move as one statement (an INSERT in a
    # WITH clause runs to completion whether or not the UPDATE reads it): one round trip
    # fewer on every batch. SQLite has no INSERT in WITH: two statements there.
    joined = conn.vendor == "postgresql"
    with conn.cursor() as cursor:
        starts = range(0, len(rows), per_statement)
        for start in starts:
            part = rows[start : start + per_statement]
            # Names from the models' metadata; every value a parameter.
            insert = f"INSERT INTO {event_table} ({columns}) VALUES {', '.join([one] * len(part))}"  # noqa: S608
            values = [value for row in part for value in row]
            if joined and start == starts[-1]:
                cursor.execute(f"WITH appended AS ({insert}) {move_head}", [*values, seq, hash_hex])
            else:
                cursor.execute(insert, values)
        if not joined or not rows:
            cursor.execute(move_head, [seq, hash_hex])
    for event in events:
        event._state.adding = False
        event._state.db = conn.alias


def _after_commit(head: HeadState) -> None:
    """Write a signed checkpoint when one is due. The events are durable already: a failure
    here is logged (and alerted), never turned into an error for the reader."""
    from vigie.audit import checkpoints

    if not checkpoints.is_due(head):
        return
    try:
        checkpoints.write_checkpoint()
    except Exception:  # any failure: the events are safe, the checkpoint waits for the next
        logger.exception("could not write the audit checkpoint")


@dataclass
class _Job:
    event: AuditEvent | None  # None: close this thread's database connection
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _Appender:
    """One thread per process that commits queued events in batches (group commit)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="vigie-audit-appender", daemon=True)
        self.thread.start()

    def submit(self, event: AuditEvent) -> AuditEvent:
        job = _Job(event)
        self.queue.put(job)
        if not job.done.wait(_WAIT_SECONDS):
            raise AuditUnavailable("audit log unavailable: the append timed out")
        if job.error is not None:
            raise AuditUnavailable(f"audit log unavailable: {job.error}") from job.error
        return event

    def close_connection(self) -> None:
        job = _Job(None)
        self.queue.put(job)
        job.done.wait(_WAIT_SECONDS)

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < _MAX_BATCH and batch[-1].event is not None:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1].event is None:
                closer = batch.pop()
                if batch:
                    self._commit(batch)
                connection.close()
                closer.done.set()
            else:
                self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        error: BaseException | None = None
        head: HeadState | None = None
        try:
            # This thread outlives requests, so Django's per-request connection checks never
            # run for it: after a database restart or failover its connection would be dead
            # and the first batch would fail. Check (and reopen) before each batch instead.
            connection.close_if_unusable_or_obsolete()
            head = append_committed([job.event for job in batch if job.event is not None])
        except BaseException as exc:  # every waiter must be woken, whatever happened
            error = exc
            try:
                connection.close()  # a broken connection is reopened by the next batch
            except Exception:  # closing a dead connection may fail too; the next batch reopens
                logger.debug("closing the audit connection failed", exc_info=True)
        if head is not None:
            # Before waking the waiters: a checkpoint is rare (every 1,000 events or 60 s),
            # and doing it here keeps this thread idle whenever no caller is waiting.
            _after_commit(head)
        for job in batch:
            job.error = error
            job.done.set()


_appender_lock = threading.Lock()
_appender_state: dict[int, _Appender] = {}


def _appender() -> _Appender:
    # Keyed by process id: a worker forked after the first append needs its own thread.
    pid = os.getpid()
    current = _appender_state.get(pid)
    if current is not None:
        return current
    with _appender_lock:
        current = _appender_state.get(pid)
        if current is None:
            _appender_state.clear()
            current = _appender_state[pid] = _Appender()
        return current


def close_appender_connection() -> None:
    """Close the appender thread's database connection (shutdown, test teardown)."""
    current = _appender_state.get(os.getpid())
    if current is not None:
        current.close_connection()
