"""The guard page: everything the exposure guard saw, for IT administrators only.

Anyone else gets 404, as for the alerts: a doctor has no reason to know the page exists.
Clearing a lockdown reopens the records to the network, so it needs a fresh second factor:
a stolen session cookie alone must not be enough to undo the guard's emergency brake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Count, Max, Min, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from vigie.accounts.models import Role, User
from vigie.accounts.reauth import is_second_factor_fresh
from vigie.alerts.models import Audience
from vigie.alerts.services import acknowledge
from vigie.guard import lockdown
from vigie.guard.heartbeat import elapsed, is_silent, open_guard_alerts, silence_seconds
from vigie.guard.models import (
    Canary,
    DriftEvent,
    GuardHost,
    GuardState,
    MaintenanceWindow,
    ProbeResult,
)

LISTED = 50  # windows and drift events shown; older ones stay in the admin and the audit
ROUNDS = 10  # probe rounds summarised in the history


def _admin_or_404(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated or user.role != Role.ADMIN:
        raise Http404
    return user


@dataclass(frozen=True)
class ProbeRound:
    round_id: str
    started: datetime
    results: int
    leaks: int
    warnings: int


def probe_history(limit: int = ROUNDS) -> list[ProbeRound]:
    """The last rounds, newest first, with their leak and warning counts."""
    rows = (
        ProbeResult.objects.values("round_id")
        .annotate(
            started=Min("checked_at"),
            finished=Max("checked_at"),
            results=Count("id"),
            leaks=Count("id", filter=Q(verdict=ProbeResult.Verdict.LEAK)),
            warnings=Count("id", filter=Q(verdict=ProbeResult.Verdict.WARNING)),
        )
        .order_by("-finished")[:limit]
    )
    return [
        ProbeRound(r["round_id"], r["started"], r["results"], r["leaks"], r["warnings"])
        for r in rows
    ]


@dataclass(frozen=True)
class HostRow:
    host: str
    pid: int | None
    last_heartbeat: datetime
    silent: bool


def guard_hosts() -> list[HostRow]:
    """Every host whose guard ever beat, each judged on its own last beat."""
    return [
        HostRow(h.host, h.pid, h.last_heartbeat, is_silent(elapsed(h.last_heartbeat)))
        for h in GuardHost.objects.order_by("host")
    ]


def overview() -> dict[str, Any]:
    """Everything the page shows, read in one place so the view stays a view."""
    # Not GuardState.get(): reading the page must not write; no row yet means the defaults.
    state = GuardState.objects.filter(pk=GuardState.SINGLETON).first() or GuardState()
    silence = silence_seconds()
    history = probe_history()
    latest = (
        list(ProbeResult.objects.filter(round_id=history[0].round_id).order_by("category", "url"))
        if history
        else []
    )
    decoys = Canary.objects.order_by("-last_touched_at", "pk")
    return {
        "state": state,
        "silence_seconds": silence,
        "silence_minutes": None if silence is None else int(silence // 60),
        "silent": is_silent(silence),
        "open_windows": list(MaintenanceWindow.objects.open().order_by("ends_at")),
        "windows": list(MaintenanceWindow.objects.order_by("-opened_at")[:LISTED]),
        "drift_events": list(DriftEvent.objects.order_by("-detected_at")[:LISTED]),
        "hosts": guard_hosts(),
        "latest_round": history[0] if history else None,
        "latest_results": latest,
        "probe_history": history,
        "decoy_count": decoys.count(),
        "touched_decoys": list(decoys.filter(touches__gt=0)[:LISTED]),
        "alerts": list(open_guard_alerts().filter(audience=Audience.ADMIN)[:100]),
    }


@require_GET
def guard_page(request: HttpRequest) -> HttpResponse:
    _admin_or_404(request)
    return render(request, "guard/page.html", overview())


@require_POST
def clear_lockdown(request: HttpRequest) -> HttpResponse:
    user = _admin_or_404(request)
    if not is_second_factor_fresh(request):
        # A POST cannot be replayed after re-authentication: come back to the guard page,
        # where the (now fresh) administrator presses the button again, knowingly.
        query = urlencode({"next": reverse("guard:page")})
        return HttpResponseRedirect(f"{reverse('accounts:reauth')}?{query}")
    if lockdown.clear(user, request):
        messages.success(request, _("Lockdown cleared: the portal serves records again."))
    else:
        messages.info(request, _("The portal was not in lockdown."))
    return redirect("guard:page")


@require_POST
def acknowledge_alert(request: HttpRequest, alert_id: int) -> HttpResponse:
    user = _admin_or_404(request)
    # Only what this page lists can be acknowledged from it; the rest has its own page.
    alert = get_object_or_404(open_guard_alerts().filter(audience=Audience.ADMIN), pk=alert_id)
    acknowledge(alert, user)
    messages.success(request, _("Alert acknowledged."))
    return redirect("guard:page")
