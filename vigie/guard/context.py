"""What every page tells administrators about the guard: is it alive, is the portal locked.

Only administrators act on it, so only their pages pay for the query: doctors and auditors
read records and reports on every click, and the guard's state is none of their business.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest

from vigie.accounts.models import Role
from vigie.guard.heartbeat import elapsed, is_silent
from vigie.guard.models import GuardState

logger = logging.getLogger(__name__)


def guard_status(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or getattr(user, "role", None) != Role.ADMIN:
        return {}
    try:
        # One row holds both the heartbeat and the lockdown flag: one query per admin page.
        # No get_or_create: a page view must not write; a missing row means "never beat".
        state = GuardState.objects.filter(pk=GuardState.SINGLETON).first()
    except DatabaseError:
        logger.exception("cannot read the guard state for the banner")
        return {}
    silence = elapsed(state.last_heartbeat if state else None)
    return {
        "guard_silent": is_silent(silence),
        # None when the guard never beat (the banner then says so instead of a duration).
        "guard_silent_minutes": None if silence is None else int(silence // 60),
        "guard_lockdown": bool(state and state.lockdown),
        "guard_lockdown_reason": state.lockdown_reason if state else "",
    }
