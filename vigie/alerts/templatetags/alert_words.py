"""{% load alert_words %}: an alert as its reader reads it (see alerts/wording.py)."""

from __future__ import annotations

from django import template

from vigie.alerts import wording
from vigie.alerts.models import Alert

register = template.Library()


@register.filter
def alert_text(alert: Alert) -> str:
    return wording.describe(alert)


@register.filter
def alert_kind(alert: Alert) -> str:
    return wording.kind_label(alert)


@register.filter
def alert_report(alert: Alert) -> str | None:
    return wording.report_url(alert)
