"""The audit head: the append lock and the last event's number and hash, read under it.

`log.append_batch` takes it to number new events; `checkpoints.write_checkpoint` takes it to
sign a head no append can move meanwhile. Both go through `lock_and_read_head`, so there is
one place that knows how the lock is taken on each database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from vigie.audit import chain
from vigie.audit.models import AuditEvent, AuditHead
from vigie.lib import rawsql

# The name the head check has always logged under: alerts on the log stay as they were.
logger = logging.getLogger("vigie.audit.log")

# "VigieAud" as a 64-bit integer: the PostgreSQL advisory lock every append takes.
APPEND_LOCK = 0x5669676965417564


class AuditUnavailable(Exception):
    """The event could not be made durable: the caller must not disclose anything."""


class AuditHeadBehind(AuditUnavailable):
    """An event lies past the audit head: the database is inconsistent, nothing is appended."""


@dataclass(frozen=True)
class HeadState:
    """The head after an append: what the checkpoint writer needs to decide if one is due."""

    seq: int
    hash: str
    checkpoint_seq: int
    checkpoint_at: datetime | None


def lock_and_read_head(
    *, asynchronous_commit: bool = False
) -> tuple[int, str, int, datetime | None]:
    """Take the append lock, then read the head (in that order, in two statements: a head
    read in the lock's own statement would use a snapshot taken before the lock was held).

    `asynchronous_commit` (PostgreSQL): this transaction commits without waiting for its WAL
    flush (see `log.append_committed`), set in the lock's round trip rather than one of its
    own.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            if asynchronous_commit:
                cursor.execute(
                    "SELECT set_config('synchronous_commit', 'off', true),"
                    " pg_advisory_xact_lock(%s)",
                    [APPEND_LOCK],
                )
            else:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK])
    # SQLite: the IMMEDIATE transaction already holds the database's write lock.
    found = _read_head()
    if found is not None:
        seq, hash_, checkpoint_seq, checkpoint_at, last = found
        if last is not None and last > seq:
            _refuse_head_behind(seq, last)
        return seq, hash_, checkpoint_seq, checkpoint_at
    # No head (a flushed test database, a restored dump): rebuild it from the last event.
    last_event = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, hash_ = last_event if last_event else (0, chain.GENESIS_HEX)
    AuditHead.objects.create(pk=1, seq=seq, hash=hash_, checkpoint_seq=0, checkpoint_at=None)
    return seq, hash_, 0, None


def _read_head() -> tuple[int, str, int, datetime | None, int | None] | None:
    """The head row and, in the same statement, the highest event number (the head check).

    Raw SQL, built from the models' metadata: this runs once per append batch, and the two
    ORM queries it replaces cost more CPU than the batch's INSERT. MAX over the primary key
    is one index step on both databases.
    """
    conn = connection
    head, event = rawsql.table(AuditHead, conn), rawsql.table(AuditEvent, conn)
    cols = [rawsql.column(AuditHead, name, conn) for name in _HEAD_COLUMNS]
    event_seq = rawsql.column(AuditEvent, "seq", conn)
    with conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(cols)}, (SELECT MAX({event_seq}) FROM {event})"  # noqa: S608
            f" FROM {head} WHERE {rawsql.column(AuditHead, 'id', conn)} = 1"
        )
        row = cursor.fetchone()
    if row is None:
        return None
    checkpoint_at = row[3]
    if checkpoint_at is not None:
        checkpoint_at = rawsql.Reader(AuditHead._meta.get_field("checkpoint_at"), conn)(
            checkpoint_at, conn
        )
    return int(row[0]), str(row[1]), int(row[2]), checkpoint_at, row[4]


_HEAD_COLUMNS = ("seq", "hash", "checkpoint_seq", "checkpoint_at")


def _refuse_head_behind(seq: int, later: int) -> None:
    # Every append moves the head in the transaction that inserts its events, so no event lies
    # past the head. If one does, the database lost a committed write (a damaged file, a
    # storage or SQLite bug) or two writers held the append lock at once: appending now would
    # fail on the duplicate number, or fork the chain. Refuse with what was found, so the
    # operator reads a diagnosis rather than a constraint name. (The check costs nothing
    # apart: MAX(seq) is read in the head's own statement.)
    logger.critical("audit head at %d but the log holds event %d", seq, later)
    raise AuditHeadBehind(
        f"audit log unavailable: the head says event {seq} is the last but event {later} "
        "exists; the database lost a committed write or its write lock failed. Stop "
        "writing, run `vigie audit verify` and check the database (restore it if damaged)"
    )
