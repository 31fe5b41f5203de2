"""{% load audit_words %}: audit codes as people read them (see audit/labels.py)."""

from __future__ import annotations

from django import template

from vigie.audit import labels

register = template.Library()


@register.filter
def action_label(action: str) -> str:
    return labels.action_label(action)


@register.filter
def role_label(role: str) -> str:
    return labels.role_label(role)


@register.filter
def reason_label(reason: str) -> str:
    return labels.reason_label(reason)


@register.filter
def emergency_reason(extra: object) -> str:
    return labels.emergency_reason(extra)
