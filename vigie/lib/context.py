"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def vigie_mode(request: HttpRequest) -> dict[str, object]:
    # Demo mode must be visible on every page so nobody mistakes it for a real clinic.
    # The idle limit is given to the page so that it can warn before the server ends the
    # session (static/vigie/session.js); the server's own check stays the one that counts.
    return {
        "VIGIE_MODE": settings.VIGIE_MODE,
        "VIGIE_DEMO": settings.VIGIE_MODE == "demo",
        "VIGIE_IDLE_MINUTES": settings.VIGIE_SESSION_IDLE_MINUTES,
        "VIGIE_IDLE_SECONDS": settings.VIGIE_SESSION_IDLE_MINUTES * 60,
        # Pages show local time (VIGIE_TIME_ZONE); where a time matters, they name the zone.
        "TIME_ZONE_NAME": settings.TIME_ZONE,
    }
