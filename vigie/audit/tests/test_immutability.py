"""The database itself refuses to rewrite or delete audit events (both engines)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from vigie.audit.log import record
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _refused(action: object) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        action()  # type: ignore[operator]


def test_rewriting_an_event_through_the_orm_is_refused() -> None:
    event = record("document.read")
    _refused(lambda: AuditEvent.objects.filter(seq=event.seq).update(actor_username="nobody"))
    event.reason = "edited"
    _refused(lambda: event.save(update_fields=["reason"]))
    assert AuditEvent.objects.get(seq=event.seq).reason == ""


def test_deleting_events_through_the_orm_is_refused() -> None:
    event = record("document.read")
    _refused(lambda: AuditEvent.objects.all().delete())
    _refused(event.delete)
    assert AuditEvent.objects.filter(seq=event.seq).exists()


def test_rewriting_or_deleting_events_with_raw_sql_is_refused() -> None:
    record("document.read")

    def raw(sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    _refused(lambda: raw("UPDATE audit_auditevent SET action = 'login.success'"))
    _refused(lambda: raw("DELETE FROM audit_auditevent"))
    if connection.vendor == "postgresql":
        _refused(lambda: raw("TRUNCATE audit_auditevent"))
    assert AuditEvent.objects.get().action == "document.read"
