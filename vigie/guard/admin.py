"""Read-only admin listings of what the guard recorded (searchable history beyond /guard/).

Read-only because each of these rows is a record of what happened: windows are opened and
closed by `vigie maintenance` (which drives the kernel and audits), never by editing a row.
GuardState is left out (lockdown is cleared on /guard/, with a fresh second factor) and so
are decoys (a browsable list of which patients are fake would help whoever wants to avoid
them).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from vigie.guard.models import DriftEvent, MaintenanceWindow, ProbeResult

M = TypeVar("M", bound=Model)


class _ReadOnlyAdmin(admin.ModelAdmin[M]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(_ReadOnlyAdmin[MaintenanceWindow]):
    list_display = (
        "source",
        "port",
        "who",
        "reason",
        "opened_at",
        "ends_at",
        "closed_at",
        "close_reason",
        "verified_closed",
    )
    list_filter = ("close_reason", "verified_closed")
    search_fields = ("=source", "who", "reason")
    date_hierarchy = "opened_at"


@admin.register(DriftEvent)
class DriftEventAdmin(_ReadOnlyAdmin[DriftEvent]):
    list_display = ("detected_at", "kind", "summary", "during_window", "alerted")
    list_filter = ("kind", "during_window", "alerted")
    search_fields = ("summary",)
    date_hierarchy = "detected_at"


@admin.register(ProbeResult)
class ProbeResultAdmin(_ReadOnlyAdmin[ProbeResult]):
    list_display = ("checked_at", "round_id", "verdict", "category", "url", "status")
    list_filter = ("verdict", "category")
    search_fields = ("=round_id", "url")
    date_hierarchy = "checked_at"
