"""Tampering behind the database's back (triggers dropped, raw SQL) is caught by verify,
which names the first bad sequence number.

Hypothesis picks the log length, the victim and the kind of tampering; each example runs in
a savepoint rolled back afterwards, with its own checkpoint file.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie.audit import chain
from vigie.audit import testing as tamper
from vigie.audit.checkpoints import write_checkpoint
from vigie.audit.log import event_fields, record
from vigie.audit.models import AuditEvent
from vigie.audit.verify import verify

pytestmark = pytest.mark.django_db

EDITABLE = {
    "action": "login.success",
    "actor_username": "mallory",
    "actor_id": 666,
    "patient_id": 999,
    "patient_ipp": "IPP-OTHER",
    "document_id": "other-document",
    "outcome": "denied",
    "source_ip": "203.0.113.66",
    "reason": "nothing to see",
    "extra": '{"n": -1}',
    "prev_hash": "ab" * 32,
    "hash": "cd" * 32,
    "at": "moment",
}


class Rollback(Exception):
    pass


def _build(count: int, checkpoint_file: Path) -> list[AuditEvent]:
    events = [record("document.read", reason=f"read {n}", extra={"n": n}) for n in range(count)]
    write_checkpoint(force=True)
    assert verify(checkpoint_file=checkpoint_file).ok
    tamper.disarm()
    return events


def _at_value() -> object:
    moment = datetime(2020, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
    return moment if connection.vendor == "postgresql" else "2020-01-01 12:00:00.000001"


def _first_bad(tmp_path: Path, scenario) -> int | None:
    """Run scenario in a rolled-back savepoint; return verify's first bad seq."""
    found: list[int | None] = []
    path = tmp_path / f"checkpoints-{uuid.uuid4().hex}.jsonl"
    from django.conf import settings as django_settings

    old = django_settings.VIGIE_AUDIT_CHECKPOINT_FILE
    django_settings.VIGIE_AUDIT_CHECKPOINT_FILE = path
    try:
        with transaction.atomic():
            scenario(path)
            result = verify(checkpoint_file=path)
            found.append(result.first.seq if result.first else None)
            transaction.set_rollback(True)
    finally:
        django_settings.VIGIE_AUDIT_CHECKPOINT_FILE = old
    return found[0]


common = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@common
@given(count=st.integers(2, 10), data=st.data(), column=st.sampled_from(sorted(EDITABLE)))
def test_editing_any_field_of_any_event_is_detected_at_that_event(
    tmp_path: Path, count: int, data: st.DataObject, column: str
) -> None:
    victim = data.draw(st.integers(1, count))

    def scenario(path: Path) -> None:
        _build(count, path)
        value = _at_value() if column == "at" else EDITABLE[column]
        tamper.set_column(victim, column, value)

    assert _first_bad(tmp_path, scenario) == victim


@common
@given(count=st.integers(2, 10), data=st.data())
def test_deleting_any_event_is_detected_at_its_number(
    tmp_path: Path, count: int, data: st.DataObject
) -> None:
    victim = data.draw(st.integers(1, count))

    def scenario(path: Path) -> None:
        events = _build(count, path)
        tamper.execute("DELETE FROM audit_auditevent WHERE seq = %s", [victim])
        if victim == count:  # hide the tail deletion from the head too
            tamper.set_head(count - 1, events[-2].hash)

    assert _first_bad(tmp_path, scenario) == victim


@common
@given(count=st.integers(2, 10), data=st.data())
def test_inserting_a_forged_event_anywhere_is_detected_at_its_number(
    tmp_path: Path, count: int, data: st.DataObject
) -> None:
    position = data.draw(st.integers(1, count + 1))
    source = data.draw(st.integers(1, count))

    def scenario(path: Path) -> None:
        _build(count, path)
        if position <= count:
            tamper.shift_up_from(position)
        tamper.copy_row(source if source < position else source + 1, position)
        prev = chain.GENESIS_HEX if position == 1 else None
        if prev is None:
            prev = AuditEvent.objects.get(seq=position - 1).hash
        tamper.set_column(position, "prev_hash", prev)
        tamper.set_column(position, "reason", "forged read")

    assert _first_bad(tmp_path, scenario) == position


@common
@given(count=st.integers(2, 10), data=st.data())
def test_swapping_two_events_is_detected_at_the_first_of_them(
    tmp_path: Path, count: int, data: st.DataObject
) -> None:
    first = data.draw(st.integers(1, count - 1))
    second = data.draw(st.integers(first + 1, count))

    def scenario(path: Path) -> None:
        _build(count, path)
        tamper.execute("UPDATE audit_auditevent SET seq = -1 WHERE seq = %s", [first])
        tamper.execute("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [first, second])
        tamper.execute("UPDATE audit_auditevent SET seq = %s WHERE seq = -1", [second])

    assert _first_bad(tmp_path, scenario) == first


@common
@given(count=st.integers(2, 10), data=st.data())
def test_truncating_the_tail_is_detected_through_the_signed_checkpoint(
    tmp_path: Path, count: int, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(2, count))  # events cut..count disappear

    def scenario(path: Path) -> None:
        events = _build(count, path)
        tamper.execute("DELETE FROM audit_auditevent WHERE seq >= %s", [cut])
        tamper.set_head(cut - 1, events[cut - 2].hash)  # the attacker fixes the head too

    assert _first_bad(tmp_path, scenario) == cut


@common
@given(count=st.integers(2, 10), data=st.data())
def test_rewriting_history_and_recomputing_every_hash_is_caught_by_the_checkpoint(
    tmp_path: Path, count: int, data: st.DataObject
) -> None:
    """The attacker knows the algorithm: edits an event and re-chains everything after it,
    head included. Only the signature outside the database can tell."""
    victim = data.draw(st.integers(1, count))

    def scenario(path: Path) -> None:
        events = _build(count, path)
        prev = bytes.fromhex(events[victim - 1].prev_hash)
        for event in events[victim - 1 :]:
            stored = AuditEvent.objects.get(seq=event.seq)
            if stored.seq == victim:
                stored.reason = "rewritten"
                tamper.set_column(victim, "reason", "rewritten")
            digest = chain.link(prev, event_fields(stored), chain.canonical_extra(stored.extra))
            tamper.set_column(stored.seq, "prev_hash", prev.hex())
            tamper.set_column(stored.seq, "hash", digest.hex())
            prev = digest
        tamper.set_head(count, prev.hex())

    # The chain is self-consistent again; the checkpoint at the head seq disagrees.
    assert _first_bad(tmp_path, scenario) == count


def test_an_untouched_log_verifies(tmp_path: Path, checkpoint_file: Path) -> None:
    for n in range(30):
        record("document.read", extra={"n": n})
        if n % 7 == 0:
            write_checkpoint(force=True)
    result = verify(checkpoint_file=checkpoint_file)
    assert result.ok, result.problems
    assert (result.checked, result.checkpoints) == (30, 5)
