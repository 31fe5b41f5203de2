"""Helpers for tests of any app that touch the audit trail (see "Test helpers" in
tests/test_test_helpers.py: plain code, no pytest; the fixtures wrapping them
live in conftest.py).

`appending_for_real()`: for tests that need `record()` to really commit (`transactional_db`).
Django flushes such databases after each test with DELETE (SQLite) or TRUNCATE
(PostgreSQL), both refused by the append-only triggers: the root conftest's
`audit_committing` fixture wraps this, request it instead of `transactional_db`.

The raw-SQL helpers below are for tamper drills: what an attacker with database access
would do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from vigie.audit.immutability import drop_triggers, install_triggers
from vigie.audit.log import close_appender_connection


@contextmanager
def appending_for_real() -> Iterator[None]:
    """The append-only triggers armed while inside, dropped after (so the flush can run)."""
    install_triggers(connection)
    try:
        yield
    finally:
        # The appender thread's connection would keep the test database busy (PostgreSQL
        # refuses to drop it) or hold SQLite's shared-cache lock during the flush.
        close_appender_connection()
        drop_triggers(connection)


TABLE = "audit_auditevent"
COLUMNS = (
    "seq, at, action, actor_id, actor_username, actor_role, actor_display, patient_id, "
    "patient_ipp, document_id, outcome, source_ip, user_agent, request_id, reason, extra, "
    "prev_hash, hash"
)


def disarm() -> None:
    drop_triggers(connection)


def execute(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def set_column(seq: int, column: str, value: Any) -> None:
    assert column.isidentifier()
    placeholder = "%s::jsonb" if column == "extra" and connection.vendor == "postgresql" else "%s"
    execute(f"UPDATE {TABLE} SET {column} = {placeholder} WHERE seq = %s", [value, seq])  # noqa: S608


def shift_up_from(seq: int) -> None:
    """Make room at `seq` by renumbering every later event (two steps: seq is unique)."""
    execute(f"UPDATE {TABLE} SET seq = -(seq + 1) WHERE seq >= %s", [seq])  # noqa: S608
    execute(f"UPDATE {TABLE} SET seq = -seq WHERE seq < 0")  # noqa: S608


def copy_row(source: int, target: int) -> None:
    cols = COLUMNS.split(", ")[1:]
    execute(
        f"INSERT INTO {TABLE} (seq, {', '.join(cols)}) "  # noqa: S608
        f"SELECT %s, {', '.join(cols)} FROM {TABLE} WHERE seq = %s",
        [target, source],
    )


def set_head(seq: int, hash_: str) -> None:
    execute("UPDATE audit_audithead SET seq = %s, hash = %s WHERE id = 1", [seq, hash_])
