"""The door's one-statement lookup (`get_document_or_404`) against the ORM rule (`_decide`).

The door finds a document, its patient, the reader's care relationship and emergency grant
in one SQL statement; lists and patient pages keep the ORM's `decide()`. Two executions of
one rule must never disagree: this walks the whole access matrix (every account kind, every
state of a relationship and of a grant in time, alone and together, ties broken by the
latest, somebody else's rights beside, every action) through both and requires the same
decision, and the same document and patient down to every field's value and type.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.http import Http404
from django.test import RequestFactory

from vigie.accounts.models import Role, User
from vigie.records import access
from vigie.records.models import CareRelationship, Document, EmergencyAccess, Patient
from vigie.records.testing import make_doctor, make_document, make_patient

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456).astimezone()
HOUR = timedelta(hours=1)
# Spans in time, relative to NOW: (start, end or None for open-ended).
RELATIONSHIPS: dict[str, list[tuple[timedelta, timedelta | None]]] = {
    "none": [],
    "open": [(-48 * HOUR, None)],
    "bounded": [(-48 * HOUR, 48 * HOUR)],
    "starts_now": [(timedelta(0), None)],
    "ended_now": [(-48 * HOUR, timedelta(0))],
    "future": [(HOUR, None)],
    "expired": [(-48 * HOUR, -HOUR)],
    "two_active": [(-48 * HOUR, None), (-2 * HOUR, 48 * HOUR)],
    "active_and_expired": [(-HOUR, None), (-72 * HOUR, -48 * HOUR)],
}
GRANTS: dict[str, list[tuple[timedelta, timedelta]]] = {
    "none": [],
    "active": [(-HOUR, 3 * HOUR)],
    "expires_now": [(-HOUR, timedelta(0))],
    "expired": [(-5 * HOUR, -HOUR)],
    "future": [(HOUR, 5 * HOUR)],
    "two_active": [(-2 * HOUR, HOUR), (-HOUR, 4 * HOUR)],
}
ACTIONS = [*access.ACTIONS, "delete"]


@pytest.fixture(autouse=True)
def _vault(vault_home: Path) -> None:
    pass


def _readers() -> dict[str, Any]:
    inactive = make_doctor("dr.inactive")
    inactive.is_active = False
    inactive.save()
    return {
        "doctor": make_doctor(),
        "inactive_doctor": inactive,
        "admin": User.objects.create_user(username="it.admin", role=Role.ADMIN),
        "auditor": User.objects.create_user(username="dpo.auditor", role=Role.AUDITOR),
        "anonymous": AnonymousUser(),
    }


def _give(doctor: User, patient: Patient, relationships: str, grants: str) -> None:
    for start, end in RELATIONSHIPS[relationships]:
        CareRelationship.objects.create(
            doctor=doctor,
            patient=patient,
            role="treating",
            valid_from=NOW + start,
            valid_until=NOW + end if end is not None else None,
        )
    for start, end in GRANTS[grants]:
        EmergencyAccess.objects.create(
            doctor=doctor,
            patient=patient,
            reason="patient_unconscious",
            justification="Patient unconscious in the emergency room.",
            granted_at=NOW + start,
            expires_at=NOW + end,
        )


def _through_the_door(user: Any, document_id: str, action: str) -> access.Decision:
    request = RequestFactory().get("/")
    request.user = user
    refused: access.OutOfScope | None = None
    try:
        found, decision = access.get_document_or_404(request, document_id, action, at=NOW)  # type: ignore[arg-type]
    except access.OutOfScope as exc:
        refused = exc
    if refused is not None:
        assert refused.document is not None
        _assert_same_rows(refused.document, document_id)
        return refused.decision
    _assert_same_rows(found, document_id)
    return decision


def _values(instance: Any) -> dict[str, tuple[type, Any]]:
    return {
        f.attname: (type(getattr(instance, f.attname)), bytes(getattr(instance, f.attname)))
        if isinstance(getattr(instance, f.attname), memoryview)
        else (type(getattr(instance, f.attname)), getattr(instance, f.attname))
        for f in type(instance)._meta.concrete_fields
    }


def _assert_same_rows(found: Document, document_id: str) -> None:
    orm = Document.objects.select_related("patient").get(pk=document_id)
    assert _values(found) == _values(orm)
    assert _values(found.patient) == _values(orm.patient)
    assert found.patient.public_id == orm.patient.public_id


def test_the_door_statement_decides_exactly_as_the_orm_rule() -> None:
    readers = _readers()
    someone_else = make_doctor("dr.other")
    cases = []
    for relationships in RELATIONSHIPS:
        for grants in GRANTS:
            patient = make_patient()
            document = make_document(patient)
            _give(readers["doctor"], patient, relationships, grants)
            _give(readers["inactive_doctor"], patient, relationships, grants)
            # Somebody else's rights on the same patient never count for the reader.
            _give(someone_else, patient, "open", "active")
            cases.append((relationships, grants, document))
    allowed = 0
    for relationships, grants, document in cases:
        orm_document = Document.objects.select_related("patient").get(pk=document.pk)
        for who, user in readers.items():
            for action in ACTIONS:
                expected = access._decide(user, action, document=orm_document, at=NOW)  # type: ignore[arg-type]
                got = _through_the_door(user, document.pk, action)
                assert got == expected, (relationships, grants, who, action)
                allowed += got.allowed
    # The matrix has both answers, and emergency grants among the allowed ones.
    assert 0 < allowed < len(cases) * len(readers) * len(ACTIONS)
    assert any(
        access._decide(readers["doctor"], "view", document=d, at=NOW).emergency
        for _r, _g, d in cases
    )


def test_an_unknown_document_is_a_plain_404_for_everybody() -> None:
    readers = _readers()
    for user in readers.values():
        request = RequestFactory().get("/")
        request.user = user
        with pytest.raises(Http404) as raised:
            access.get_document_or_404(request, "Z" * 32, "view", at=NOW)
        assert not isinstance(raised.value, access.OutOfScope)


@pytest.mark.usefixtures("audit_committing")
def test_the_door_statement_serves_every_thread_of_a_worker() -> None:
    # Built once and shared: it must use each thread's own connection (a server's threads
    # once got "DatabaseWrapper objects created in a thread can only be used in that same
    # thread" on every read after the first thread's).
    doctor, patient = make_doctor(), make_patient()
    document = make_document(patient)
    _give(doctor, patient, "open", "none")
    request = RequestFactory().get("/")
    request.user = doctor
    assert access.get_document_or_404(request, document.pk, "view", at=NOW)[1].allowed
    answers: list[object] = []

    def other_thread() -> None:
        try:
            answers.append(access.get_document_or_404(request, document.pk, "view", at=NOW)[1])
        except Exception as exc:  # the assertion below shows what it was
            answers.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=30)
    assert answers == [
        access.Decision(True, access.CARE_RELATIONSHIP, getattr(answers[0], "basis_id", None))
    ]
