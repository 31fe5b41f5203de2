"""Audit receivers for events that can happen outside our views (admin logout, lockout)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from vigie.accounts import events


def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        events.audit(events.LOGOUT, request=request, actor=user)


def on_locked_out(
    sender: Any, request: HttpRequest | None, username: str | None, **kwargs: Any
) -> None:
    # The identifier is recorded as typed (normalised) even if no such account exists: the
    # audit trail must show attacks on guessed names too.
    events.audit(
        events.LOGIN_LOCKED,
        request=request,
        outcome="denied",
        reason="too_many_failures",
        extra={"username": username or ""},
    )
