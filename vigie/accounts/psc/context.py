"""Template context: whether the PSC sign-in is offered (login and re-authentication pages)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def psc(request: HttpRequest) -> dict[str, bool]:
    return {"psc_enabled": bool(settings.VIGIE_PSC_ENABLED)}
