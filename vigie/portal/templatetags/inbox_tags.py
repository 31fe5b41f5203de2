"""`{% unread_total %}`: the header's count of documents the doctor has not opened."""

from __future__ import annotations

import logging

from django import template
from django.db import DatabaseError
from django.http import HttpRequest

from vigie.accounts.models import Role
from vigie.portal import inbox
from vigie.records.access import LockedDown

register = template.Library()
logger = logging.getLogger(__name__)


@register.simple_tag(takes_context=True)
def unread_total(context: template.Context) -> int | None:
    """The count, or None when there is none to show: not a doctor, a lockdown (no record,
    not even a count, is served), or a database that cannot answer (the page being drawn
    may be the one that says so: it must still be drawn)."""
    request: HttpRequest | None = context.get("request")
    user = getattr(request, "user", None)
    if user is None or getattr(user, "role", None) != Role.DOCTOR:
        return None
    known = context.get("unread_total")
    if isinstance(known, int):
        return known  # the view counted already (the inbox, the patient list)
    try:
        return inbox.unread_total(user)
    except LockedDown:
        return None
    except DatabaseError:
        logger.exception("could not count the unread documents")
        return None
