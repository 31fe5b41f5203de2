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
from django.utils import timezone

from vigie.alerts.services import raise_alert
from vigie.audit.log import record
from vigie.guard.models import GuardState

if TYPE_CHECKING:
    from django.http import HttpRequest

    from vigie.accounts.models import User

logger = logging.getLogger(__name__)


def _flag_is_set() -> bool:
    # Raw SQL: this runs twice on every document read (the decision, then just before the
    # vault), and building the ORM query cost 0.4 ms of CPU each time for a 0.05 ms lookup.
    meta, quote = GuardState._meta, connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    flag = quote(meta.get_field("lockdown").column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} WHERE {pk} = %s AND {flag}",  # noqa: S608 - model names
            [GuardState.SINGLETON],
        )
        return cursor.fetchone() is not None


def is_locked_down() -> bool:
    # Fail closed: if the flag cannot be read, the records are not served.
    try:
        return _flag_is_set()
    except DatabaseError:
        logger.exception("cannot read the lockdown flag; serving no records")
        return True


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
