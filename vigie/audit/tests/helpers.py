"""Raw-SQL helpers for tamper drills: what an attacker with database access would do."""

from __future__ import annotations

from typing import Any

from django.db import connection

from vigie.audit.immutability import drop_triggers

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
