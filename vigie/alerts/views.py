"""Alerts for the people who act on them: IT sees the `admin` audience, the DPO `auditor`.
Doctors (and anyone else) get 404."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from vigie.accounts.models import User
from vigie.alerts.models import Alert
from vigie.alerts.services import acknowledge

_AUDIENCE_OF_ROLE = {"admin": "admin", "auditor": "auditor"}


def _audience_or_404(request: HttpRequest) -> tuple[User, str]:
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise Http404
    audience = _AUDIENCE_OF_ROLE.get(user.role)
    if audience is None:
        raise Http404
    return user, audience


@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    _, audience = _audience_or_404(request)
    alerts = Alert.objects.filter(audience=audience)
    return render(
        request,
        "alerts/list.html",
        {
            "open_alerts": alerts.filter(acknowledged_at__isnull=True)[:100],
            "closed_alerts": alerts.filter(acknowledged_at__isnull=False)[:20],
        },
    )


@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    user, audience = _audience_or_404(request)
    alert = get_object_or_404(Alert, pk=alert_id, audience=audience)
    acknowledge(alert, user)
    return redirect("alerts:list")
