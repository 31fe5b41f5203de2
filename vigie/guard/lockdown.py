"""Lockdown: once an exposure is detected, the portal stops serving records until an
administrator, with a fresh second factor, says the perimeter is safe again.

The guard engages it (a process of its own, so the flag lives in the database, which both
read); the portal checks it on every records page. Engaging is idempotent and never fails
its caller; clearing is audited with who did it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from vigie.alerts.services import raise_alert
from vigie.audit.log import record
from vigie.guard.models import GuardState

if TYPE_CHECKING:
    from django.http import HttpRequest

    from vigie.accounts.models import User

logger = logging.getLogger(__name__)


def _flag_query(conn: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
    """SELECT 1 when the lockdown is on (no row otherwise), and its parameters."""
    meta, quote = GuardState._meta, conn.ops.quote_name
    table, pk = quote(meta.db_table), quote(str(meta.pk.column))
    flag = quote(str(meta.get_field("lockdown").column))
    # Names from the model's metadata, the value a parameter.
    return f"SELECT 1 FROM {table} WHERE {pk} = %s AND {flag}", [GuardState.SINGLETON]  # noqa: S608


def _flag_is_set() -> bool:
    # Raw SQL: this runs on every document read (just before the vault; the door's lookup
    # reads it in its own statement, see `LockdownFlag.in_statement`), and building the ORM
    # query cost 0.4 ms of CPU each time for a 0.05 ms lookup.
    sql, params = _flag_query(connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


class LockdownFlag:
    """`is_locked_down()`: is the lockdown on? Fails closed: True if the flag cannot be read.

    A callable object rather than a function so that it can also hand its query to a
    statement that reads the flag together with other rows (`in_statement`): the door's
    document lookup asks "locked down?" and "which document, whose, may this doctor read
    it?" in one round trip instead of two. Whoever uses `in_statement` must treat a row
    without the flag as unlocked only if the statement itself succeeded, and fall back to
    calling this object (which fails closed) if it raised.
    """

    def __call__(self) -> bool:
        try:
            return _flag_is_set()
        except DatabaseError:
            logger.exception("cannot read the lockdown flag; serving no records")
            return True

    def in_statement(self, conn: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        """A scalar subquery, `(SELECT 1 ...)`: 1 while the lockdown is on, else NULL."""
        sql, params = _flag_query(conn)
        return f"({sql})", params


is_locked_down = LockdownFlag()


def engage(reason: str, details: dict[str, Any] | None = None) -> bool:
    """Put the portal in lockdown; True if this call engaged it (False: it already was)."""
    with transaction.atomic():
        state = GuardState.get()
        state = GuardState.objects.select_for_update().get(pk=state.pk)
        if state.lockdown:
            return False
        state.lockdown = True
        state.lockdown_reason = reason[:500]
        state.lockdown_since = timezone.now()
        state.lockdown_cleared_by = ""
        state.lockdown_cleared_at = None
        state.save()
        record("guard.lockdown.engaged", reason=reason, extra=details or {})
    raise_alert(
        "guard.lockdown",
        severity="critical",
        summary=f"Lockdown engaged: the portal serves no records ({reason})",
        details=details or {},
        dedupe_key="guard.lockdown",
    )
    return True


def clear(user: User, request: HttpRequest | None = None) -> bool:
    """Lift the lockdown (the caller has checked the second factor); False if it was off."""
    with transaction.atomic():
        state = GuardState.get()
        state = GuardState.objects.select_for_update().get(pk=state.pk)
        if not state.lockdown:
            return False
        reason = state.lockdown_reason
        state.lockdown = False
        state.lockdown_cleared_by = user.get_username()
        state.lockdown_cleared_at = timezone.now()
        state.save()
        record(
            "guard.lockdown.cleared",
            request=request,
            actor=user,
            extra={"lockdown_reason": reason},
        )
    return True
