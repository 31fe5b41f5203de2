"""An append outside any transaction is durable when it returns, on both databases.

On PostgreSQL the append commits asynchronously (so the append lock is not held across the
WAL flush) and a second, synchronous commit flushes the WAL past it: this checks the flush
really covers the append's own commit record before `append_committed` returns.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from vigie.audit import log as audit_log
from vigie.audit.models import AuditEvent
from vigie.audit.verify import verify

pytestmark = pytest.mark.usefixtures("audit_committing")


def _lsn(expression: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({expression}) - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


def test_an_append_is_flushed_before_it_returns(monkeypatch: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite commits with synchronous=FULL: the commit is the flush")
    seen: list[int] = []
    batch = audit_log.append_batch

    def append_and_note_the_commit(events: list[AuditEvent], **kwargs: Any) -> Any:
        # Right after the append's own COMMIT, the WAL insert position is past its record.
        transaction.on_commit(lambda: seen.append(_lsn("pg_current_wal_insert_lsn()")))
        return batch(events, **kwargs)

    monkeypatch.setattr(audit_log, "append_batch", append_and_note_the_commit)
    for _ in range(3):
        audit_log.record("document.read")
        assert seen, "the append's transaction did not commit"
        assert _lsn("pg_current_wal_flush_lsn()") >= seen[-1]
    assert AuditEvent.objects.count() == 3
    assert verify().problems == []


def test_the_flush_does_not_depend_on_the_sessions_setting(monkeypatch: Any) -> None:
    # The flushing statement runs alone in autocommit with synchronous_commit set for its own
    # transaction only: even a connection whose session commits asynchronously (a pooler's
    # or an administrator's default) must not return before the WAL is flushed.
    if connection.vendor != "postgresql":
        pytest.skip("SQLite commits with synchronous=FULL: the commit is the flush")
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    try:
        seen: list[int] = []
        batch = audit_log.append_batch

        def append_and_note_the_commit(events: list[AuditEvent], **kwargs: Any) -> Any:
            transaction.on_commit(lambda: seen.append(_lsn("pg_current_wal_insert_lsn()")))
            return batch(events, **kwargs)

        monkeypatch.setattr(audit_log, "append_batch", append_and_note_the_commit)
        for _ in range(5):
            event = audit_log._build(
                "document.read",
                request=None,
                actor=None,
                patient=None,
                document=None,
                outcome="success",
                reason="",
                extra=None,
            )
            # On this thread's connection, the one whose session was set above.
            audit_log.append_committed([event])
            assert _lsn("pg_current_wal_flush_lsn()") >= seen[-1]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")
    assert verify().problems == []
