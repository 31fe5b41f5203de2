"""Audit receivers for events that can happen outside our views (admin logout)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from vigie.accounts import events


def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        events.audit(events.LOGOUT, request=request, actor=user)
