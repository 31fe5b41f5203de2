"""Template context for the guard (placeholder until the dead man's switch banner lands)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def guard_status(request: HttpRequest) -> dict[str, Any]:
    return {}
