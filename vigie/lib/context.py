"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def vigie_mode(request: HttpRequest) -> dict[str, object]:
    # Demo mode must be visible on every page so nobody mistakes it for a real clinic.
    return {"VIGIE_MODE": settings.VIGIE_MODE, "VIGIE_DEMO": settings.VIGIE_MODE == "demo"}
