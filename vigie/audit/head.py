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


def lock_and_read_head() -> tuple[int, str, int, datetime | None]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK])
    # SQLite: the IMMEDIATE transaction already holds the database's write lock.
    row = AuditHead.objects.filter(pk=1).values_list(
        "seq", "hash", "checkpoint_seq", "checkpoint_at"
    )[:1]
    found = list(row)
    if found:
        _check_head_is_last(found[0][0])
        return found[0]
    # No head (a flushed test database, a restored dump): rebuild it from the last event.
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, hash_ = last if last else (0, chain.GENESIS_HEX)
    AuditHead.objects.create(pk=1, seq=seq, hash=hash_, checkpoint_seq=0, checkpoint_at=None)
    return seq, hash_, 0, None


def _check_head_is_last(seq: int) -> None:
    # Every append moves the head in the transaction that inserts its events, so no event lies
    # past the head. If one does, the database lost a committed write (a damaged file, a
    # storage or SQLite bug) or two writers held the append lock at once: appending now would
    # fail on the duplicate number, or fork the chain. Refuse with what was found, so the
    # operator reads a diagnosis rather than a constraint name. (One index lookup per batch.)
    later = (
        AuditEvent.objects.filter(seq__gt=seq).order_by("-seq").values_list("seq", flat=True)
    ).first()
    if later is not None:
        logger.critical("audit head at %d but the log holds event %d", seq, later)
        raise AuditHeadBehind(
            f"audit log unavailable: the head says event {seq} is the last but event {later} "
            "exists; the database lost a committed write or its write lock failed. Stop "
            "writing, run `vigie audit verify` and check the database (restore it if damaged)"
        )
