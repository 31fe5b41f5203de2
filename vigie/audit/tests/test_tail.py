"""The unanchored tail: an attacker with the database alone rewrites and truncates the events
after the last signed checkpoint. The watcher anchors them within one interval whatever the
traffic and whatever the head row says; verify names the rewrite once it has, and fails on the
tail's age when nothing anchors it."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from vigie.audit import chain, watch
from vigie.audit import testing as tamper
from vigie.audit.checkpoints import read_checkpoints, write_checkpoint
from vigie.audit.log import event_fields, record
from vigie.audit.models import AuditEvent
from vigie.audit.verify import verify

pytestmark = pytest.mark.django_db

LIMIT = timedelta(seconds=120)


def _log_with_a_tail() -> None:
    """Seq 1-3 under a signed checkpoint, seq 4-6 after it (not yet due: no traffic since)."""
    for n in range(3):
        record("document.read", reason=f"read {n}")
    write_checkpoint(force=True)
    for n in range(3, 6):
        record("document.read", reason=f"read {n}")


def _rewrite_and_truncate() -> None:
    """As the database owner: seq 5 rewritten, seq 6 dropped, the chain and head recomputed."""
    tamper.disarm()
    tamper.execute("DELETE FROM audit_auditevent WHERE seq = 6")
    tamper.set_column(5, "reason", "nothing to see")
    stored = AuditEvent.objects.get(seq=5)
    digest = chain.link(
        bytes.fromhex(stored.prev_hash), event_fields(stored), chain.canonical_extra(stored.extra)
    )
    tamper.set_column(5, "hash", digest.hex())
    tamper.set_head(5, digest.hex())


def _mute_the_head_row() -> None:
    """As the database owner: the head claims its tail is already checkpointed."""
    tamper.execute(
        "UPDATE audit_audithead SET checkpoint_seq = seq, checkpoint_at = %s WHERE id = 1",
        [timezone.now() + timedelta(days=365)],
    )


def test_attack_rewriting_the_unanchored_tail_is_named_once_the_watcher_anchored_it() -> None:
    _log_with_a_tail()
    _mute_the_head_row()
    # One pass of `vigie audit watch`, the next checkpoint interval after the tail was written.
    watch.run(threading.Event(), interval=0, once=True)
    _rewrite_and_truncate()
    result = verify(max_tail_age=LIMIT)
    # The signed head (seq 6) is gone: verify names where the log now falls short of it.
    assert result.first is not None
    assert (result.first.seq, result.first.kind) == (6, "truncated after checkpoint")


def test_attack_rewriting_a_tail_nobody_anchors_fails_on_its_age() -> None:
    _log_with_a_tail()
    _rewrite_and_truncate()  # self-consistent again: no signature covers seq 4-5
    soon = verify(max_tail_age=LIMIT, now=timezone.now() + timedelta(seconds=30))
    assert soon.ok, soon.problems
    assert (soon.tail_events, soon.tail_age is not None) == (2, True)
    later = verify(max_tail_age=LIMIT, now=timezone.now() + timedelta(seconds=121))
    assert later.first is not None
    assert (later.first.seq, later.first.kind) == (4, "unanchored tail")


def test_the_watcher_writes_its_heartbeat_durably() -> None:
    assert watch.last_beat() is None
    watch.run(threading.Event(), interval=0, once=True)
    beat = watch.last_beat()
    assert beat is not None
    assert timezone.now() - beat < timedelta(seconds=5)
    assert watch.heartbeat_path().stat().st_mode & 0o077 == 0


def test_verify_command_reports_the_tail(capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management import call_command

    _log_with_a_tail()
    call_command("audit", "verify", "--quiet", "--jobs", "1")
    assert "unanchored tail: 3 event(s)" in capsys.readouterr().out


def test_the_watcher_anchors_every_interval_on_its_own_clock(settings) -> None:
    """Driven by a fake monotonic clock (no sleeping): a pass 10 s after the last signature
    signs nothing, the one 60 s after signs the new tail, though the head row says it is
    signed."""
    settings.VIGIE_AUDIT_CHECKPOINT_SECONDS = 60
    record("document.read")
    clock = iter([0.0, 0.0, 10.0, 60.0, 60.0])
    stop = threading.Event()
    calls: list[float] = []

    def monotonic() -> float:
        now = next(clock)
        if now == 10.0:
            record("document.read")  # traffic between passes...
            _mute_the_head_row()  # ...and a head row claiming it is already signed
        calls.append(now)
        return now

    # Stop once the clock has been read for the last time (after the 60 s pass signed).
    stop.wait = lambda timeout=None: len(calls) == 5  # type: ignore[method-assign]
    watch.run(stop, interval=0, monotonic=monotonic)
    signed, _ = read_checkpoints()
    assert [c.seq for c in signed] == [1, 2]


def test_a_second_watcher_stands_by_while_another_node_holds_the_watch() -> None:
    """Every node runs `vigie audit watch`: only the singleton's holder anchors (and scans);
    the others still beat, and one takes over, at once, when the holder is gone."""
    from vigie.lib.singleton import AUDIT_WATCH, Singleton

    record("document.read")
    other_node = Singleton(AUDIT_WATCH)
    try:
        assert other_node.acquire() is True
        watch.run(threading.Event(), interval=0, once=True)
        assert read_checkpoints()[0] == []  # stood by: nothing signed
        assert watch.last_beat() is not None  # but alive
    finally:
        other_node.release()
    watch.run(threading.Event(), interval=0, once=True)
    assert [c.seq for c in read_checkpoints()[0]] == [1]


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="PostgreSQL only: on SQLite the lock is a file, reachable with the disk",
)
def test_a_watcher_that_cannot_reach_the_lock_does_not_claim_to_be_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import OperationalError

    from vigie.lib.singleton import Singleton

    def unreachable(self: Singleton) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(Singleton, "_connect", unreachable)
    watch.run(threading.Event(), interval=0, once=True)
    assert watch.last_beat() is None  # `vigie check` fails: nobody anchors, nobody scans
