"""The door's lookup reads the lockdown flag in its own statement (issue 19: one round trip
fewer on every read). These tests hold that statement to what `ensure_served()` answered
when it ran on its own first: the same refusal for every id and every reader, failing
closed when the flag cannot be read, and the flag's subquery agreeing with the flag."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from vigie.accounts.models import Role
from vigie.accounts.testing import make_user
from vigie.guard import lockdown
from vigie.guard.models import GuardState
from vigie.records import access
from vigie.records.access import LockedDown, get_document_or_404
from vigie.records.models import CareRelationship, Document
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n" + b"x" * 1024 + b"\n%%EOF\n"


@pytest.fixture(autouse=True)
def _vault(vault_home) -> None:
    pass


@pytest.fixture
def doctor():
    return make_user("dr.statement", role=Role.DOCTOR)


@pytest.fixture
def document(doctor) -> Document:
    patient = make_patient("UNIQUE")
    CareRelationship.objects.create(
        doctor=doctor,
        patient=patient,
        role="treating",
        valid_from=timezone.now() - timedelta(days=1),
    )
    return make_document(patient, PDF)


def asking(user) -> HttpRequest:
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_it_reads_the_flag_and_the_document_in_one_statement(doctor, document) -> None:
    with CaptureQueriesContext(connection) as queries:
        found, decision = get_document_or_404(asking(doctor), document.pk, "view")
    assert (found, decision.allowed) == (document, True)
    assert len(queries) == 1
    assert GuardState._meta.db_table in queries[0]["sql"]


@pytest.mark.parametrize("engaged", [False, True])
def test_the_flags_subquery_says_what_the_flag_says(engaged: bool) -> None:
    GuardState.get()
    if engaged:
        lockdown.engage("test")
    sql, params = lockdown.is_locked_down.in_statement(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        (value,) = cursor.fetchone()
    assert (value is not None) is engaged is lockdown.is_locked_down()


def test_every_id_and_every_reader_is_refused_alike_during_lockdown(doctor, document) -> None:
    outsider = make_user("dr.outsider", role=Role.DOCTOR)
    admin = make_user("it.statement", role=Role.ADMIN)
    # Unlocked, the answers differ (that is the point of a lookup) ...
    assert get_document_or_404(asking(doctor), document.pk, "view")[1].allowed
    with pytest.raises(Http404):
        get_document_or_404(asking(outsider), document.pk, "view")
    lockdown.engage("test")
    # ... locked, nothing is told apart: real, unknown and malformed ids, any reader.
    for user in (doctor, outsider, admin, AnonymousUser()):
        for document_id in (document.pk, "Z" * 32, "../../etc/passwd", ""):
            with pytest.raises(LockedDown):
                get_document_or_404(asking(user), document_id, "view")


def test_a_failing_lookup_fails_closed_when_the_flag_cannot_be_read(
    doctor, document, monkeypatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise DatabaseError("database is locked")

    monkeypatch.setattr(access._DocumentLookup, "fetch", broken)
    # The flag readable and off: the lookup's own error, as before.
    with pytest.raises(DatabaseError):
        get_document_or_404(asking(doctor), document.pk, "view")
    # The flag unreadable too: a lockdown, as ensure_served() answers on its own.
    monkeypatch.setattr(lockdown, "_flag_is_set", broken)
    with pytest.raises(LockedDown):
        get_document_or_404(asking(doctor), document.pk, "view")


def test_a_stand_in_flag_is_still_asked_first(doctor, document, monkeypatch) -> None:
    # A flag without `in_statement` (a test's, another installation's) is called on its own.
    asked: list[bool] = []

    def stand_in() -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(lockdown, "is_locked_down", stand_in)
    with pytest.raises(LockedDown):
        get_document_or_404(asking(doctor), document.pk, "view")
    assert asked == [True]
