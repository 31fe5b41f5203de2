"""django-axes hooks: one spelling per identifier, the real source address, a neutral page.

Lockout applies per account and per source address (settings.AXES_LOCKOUT_PARAMETERS); wrong
second-factor codes are fed to the same counter by vigie.accounts.otp.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from vigie.accounts.models import User


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The identifier exactly as accounts store it, so "DR.Martin " and "dr.martin" share a
    counter: otherwise every new spelling would buy an attacker five more guesses."""
    raw = (credentials or {}).get("username")
    if raw is None:
        raw = request.POST.get("username")
    if not isinstance(raw, str):
        return None
    return User.normalize_username(raw)


def client_ip(request: HttpRequest) -> str | None:
    # The direct peer. Forwarded-for headers are trusted only once a proxy configuration
    # says which hop to believe; until then any client could forge them to dodge lockout.
    value = request.META.get("REMOTE_ADDR")
    return value if isinstance(value, str) and value else None


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The same page and status whether or not the identifier exists (no account probing)."""
    return locked_page(request)


def locked_page(request: HttpRequest) -> HttpResponse:
    from django.conf import settings

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(request, "accounts/locked.html", {"minutes": minutes}, status=429)
