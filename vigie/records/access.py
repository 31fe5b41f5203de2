"""Who may see what: the one access decision, and the lookups that enforce it.

Every path to a patient or a document asks `decide()`. The rule is short on purpose:

- only an active doctor account reads anything; IT administrators and auditors never read
  documents (separation of duties: they manage accounts, or review the audit trail);
- a doctor reads a patient's records while a care relationship is active, or while a
  break-the-glass emergency grant is active (it expires after a few hours);
- anything else is refused, and the lookups below answer 404 for it, exactly as for an id
  that does not exist: a refusal must never confirm that a record exists;
- while the guard's lockdown is on, nothing is decided at all: every decision, scope and
  lookup raises `LockedDown` before it touches a record, whatever the URL, the channel
  (portal, FHIR, a future API) or the user. Enforcing it here, where every path to a
  patient passes, is what makes it hold on routes nobody thought of; a URL-based rule did
  not (/fhir/Binary kept serving PDFs during a lockdown).

This module decides only; it records nothing and reads no bytes (the portal's one door
records the audit event and then streams through `records.content`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model, Q, QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.module_loading import import_string

from vigie.accounts.models import Role
from vigie.lib import rawsql
from vigie.records.models import (
    CareRelationship,
    Document,
    EmergencyAccess,
    Patient,
)

Action = Literal["list", "view", "download"]
ACTIONS: tuple[Action, ...] = ("list", "view", "download")

# Machine-readable reasons, stored in audit events and shown to nobody but the auditor.
CARE_RELATIONSHIP = "care_relationship"
EMERGENCY_ACCESS = "emergency_access"
NO_RELATIONSHIP = "no_relationship"
ROLE_NOT_DOCTOR = "role_not_doctor"
INACTIVE_USER = "inactive_user"
ANONYMOUS = "anonymous"
NO_TARGET = "no_target"
DOCUMENT_OF_ANOTHER_PATIENT = "document_of_another_patient"
UNKNOWN_ACTION = "unknown_action"

# Ids are checked for shape before any query: junk never reaches the database, and a
# malformed id is answered like an unknown one.
_DOCUMENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_PUBLIC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")

UserLike = AbstractBaseUser | AnonymousUser
# The lockdown flag's query as a scalar subquery, for a statement that reads it with others
# (`vigie.guard.lockdown.LockdownFlag.in_statement`; records does not import the guard).
FlagQuery = Callable[[BaseDatabaseWrapper], tuple[str, list[Any]]]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    # Primary key of the CareRelationship or EmergencyAccess that allows the access.
    basis_id: int | None = None
    emergency: bool = False
    # When an emergency grant ends (shown in the red banner); None otherwise.
    expires_at: datetime | None = None

    def __bool__(self) -> bool:
        return self.allowed


class LockedDown(Exception):
    """The portal is in lockdown: no patient's record, not even a name, is served.

    Not an Http404 on purpose: a doctor must be told that the portal is locked, not that
    the record is missing, and no caller may mistake it for a refusal it can handle. The
    lockdown middleware and the FHIR views turn it into a 503; anywhere else it still ends
    the request without a byte of the record (a 500 at worst).
    """


def ensure_served() -> None:
    """Raise LockedDown while the guard's lockdown is on (or its flag cannot be read).

    Every decision and scope below calls it first; the door calls it again just before the
    vault, so a lockdown engaged mid-request stops the bytes too.
    """
    is_locked_down = import_string(settings.VIGIE_LOCKDOWN_FLAG)
    if is_locked_down():
        raise LockedDown


def _refused(reason: str) -> Decision:
    return Decision(allowed=False, reason=reason)


def _reader_refusal(user: UserLike) -> Decision | None:
    """Why this account may not read any record at all, or None if it is a working doctor."""
    if not user.is_authenticated:
        return _refused(ANONYMOUS)
    if not user.is_active:
        return _refused(INACTIVE_USER)
    if getattr(user, "role", None) != Role.DOCTOR:
        return _refused(ROLE_NOT_DOCTOR)
    return None


def decide(
    user: UserLike | None,
    action: Action,
    *,
    patient: Patient | None = None,
    document: Document | None = None,
    at: datetime | None = None,
) -> Decision:
    """May `user` list / view / download this patient's records (or this document), and why.

    The same rule holds for the three actions today; the action is part of the question so
    that a stricter rule (say, no download under emergency access) changes only this place.
    Raises LockedDown during a lockdown.
    """
    ensure_served()
    return _decide(user, action, patient=patient, document=document, at=at)


def _decide(
    user: UserLike | None,
    action: Action,
    *,
    patient: Patient | None = None,
    document: Document | None = None,
    at: datetime | None = None,
) -> Decision:
    if action not in ACTIONS:
        return _refused(UNKNOWN_ACTION)
    if user is None:
        return _refused(ANONYMOUS)
    refusal = _reader_refusal(user)
    if refusal is not None:
        return refusal
    if document is not None:
        if patient is not None and document.patient_id != patient.pk:
            return _refused(DOCUMENT_OF_ANOTHER_PATIENT)
        patient_id = document.patient_id
    elif patient is not None:
        patient_id = patient.pk
    else:
        return _refused(NO_TARGET)
    moment = at or timezone.now()
    relationship = (
        CareRelationship.objects.active(moment)
        .filter(doctor_id=user.pk, patient_id=patient_id)
        .order_by("-valid_from")
        .values_list("pk", flat=True)
        .first()
    )
    if relationship is not None:
        return Decision(allowed=True, reason=CARE_RELATIONSHIP, basis_id=relationship)
    grant = (
        EmergencyAccess.objects.active(moment)
        .filter(doctor_id=user.pk, patient_id=patient_id)
        .order_by("-expires_at")
        .values_list("pk", "expires_at")
        .first()
    )
    if grant is not None:
        return Decision(
            allowed=True,
            reason=EMERGENCY_ACCESS,
            basis_id=grant[0],
            emergency=True,
            expires_at=grant[1],
        )
    return _refused(NO_RELATIONSHIP)


def patients_in_scope(user: UserLike | None, at: datetime | None = None) -> QuerySet[Patient]:
    """The patients `user` may list: an active care relationship or an active emergency grant.

    Keep in step with `decide()`: a patient in this queryset is one `decide()` allows.
    Raises LockedDown during a lockdown (an empty list would read as "no patients").
    """
    ensure_served()
    if user is None or _reader_refusal(user) is not None:
        return Patient.objects.none()
    moment = at or timezone.now()
    related = CareRelationship.objects.active(moment).filter(doctor_id=user.pk)
    granted = EmergencyAccess.objects.active(moment).filter(doctor_id=user.pk)
    return Patient.objects.filter(
        Q(pk__in=related.values("patient_id")) | Q(pk__in=granted.values("patient_id"))
    )


class OutOfScope(Http404):
    """The record exists but the user may not see it. It *is* a 404 (Django answers it as
    such if nobody catches it); callers that audit refusals catch it to learn what was
    asked for and why it was refused. Its message is empty: nothing leaks to the page."""

    def __init__(
        self, decision: Decision, *, patient: Patient, document: Document | None = None
    ) -> None:
        super().__init__("")
        self.decision = decision
        self.patient = patient
        self.document = document


def get_patient_or_404(
    request: HttpRequest, public_id: str, action: Action = "view", *, at: datetime | None = None
) -> tuple[Patient, Decision]:
    """The patient with this public id if the requesting user may `action` it; else 404.

    Unknown, malformed and out-of-scope ids raise the same Http404 (OutOfScope for the last,
    so the caller can audit the refusal). During a lockdown every id, known or not, raises
    LockedDown before any lookup: the answer must not tell which ids exist.
    """
    ensure_served()
    if not _PUBLIC_ID_RE.match(public_id or ""):
        raise Http404("")
    patient = Patient.objects.filter(public_id=public_id).first()
    if patient is None:
        raise Http404("")
    decision = _decide(request.user, action, patient=patient, at=at)
    if not decision.allowed:
        raise OutOfScope(decision, patient=patient)
    return patient, decision


def get_document_or_404(
    request: HttpRequest, document_id: str, action: Action, *, at: datetime | None = None
) -> tuple[Document, Decision]:
    """The document with this id if the requesting user may `action` it; else 404
    (LockedDown during a lockdown, for every id, before anything found is used).

    One statement reads the lockdown flag and finds the document, its patient, the user's
    active care relationship and emergency grant (`_DocumentLookup`); the decision is then
    `_decide`'s rule applied to what it found. `test_access_differential` proves the two
    equal over the whole matrix; `test_lockdown` that the flag answers as `ensure_served`.
    """
    flag = import_string(settings.VIGIE_LOCKDOWN_FLAG)
    in_statement: FlagQuery | None = getattr(flag, "in_statement", None)
    if in_statement is None or not _DOCUMENT_ID_RE.match(document_id or ""):
        # A flag that cannot join the lookup (a stand-in), or an id that never reaches the
        # database: the flag on its own, first, as for patients.
        ensure_served()
    if not _DOCUMENT_ID_RE.match(document_id or ""):
        raise Http404("")
    user = request.user
    moment = at or timezone.now()
    reader = user if user is not None and _reader_refusal(user) is None else None
    lookup = _DocumentLookup.for_connection(in_statement=in_statement)
    try:
        locked, found = lookup.fetch(document_id, reader.pk if reader is not None else None, moment)
    except DatabaseError:
        if in_statement is not None:
            # Fail closed as the flag does alone: unreadable or on, no record at all.
            ensure_served()
        raise
    if locked:
        # Before anything about the row is used: known and unknown ids answer alike.
        raise LockedDown
    if found is None:
        raise Http404("")
    document, relationship, grant_id, grant_expires = found
    decision = _decide_found(user, action, relationship, grant_id, grant_expires)
    if not decision.allowed:
        raise OutOfScope(decision, patient=document.patient, document=document)
    return document, decision


def _decide_found(
    user: UserLike | None,
    action: Action,
    relationship: int | None,
    grant_id: int | None,
    grant_expires: datetime | None,
) -> Decision:
    """`_decide`'s rule, in its order, on what the one statement found for a document."""
    if action not in ACTIONS:
        return _refused(UNKNOWN_ACTION)
    if user is None:
        return _refused(ANONYMOUS)
    refusal = _reader_refusal(user)
    if refusal is not None:
        return refusal
    if relationship is not None:
        return Decision(allowed=True, reason=CARE_RELATIONSHIP, basis_id=relationship)
    if grant_id is not None:
        return Decision(
            allowed=True,
            reason=EMERGENCY_ACCESS,
            basis_id=grant_id,
            emergency=True,
            expires_at=grant_expires,
        )
    return _refused(NO_RELATIONSHIP)


class _DocumentLookup:
    """Document + patient + active care relationship + active emergency grant, one statement.

    Why not the ORM: the door runs this on every read, and building the two or three ORM
    queries cost ~2.8 ms of CPU for ~0.2 ms of database work. The SQL is written once per
    connection from the models' own metadata (table and column names, the backend's value
    converters: `vigie.lib.rawsql`), so a renamed column or a new field follows without
    touching this class. The conditions are those of `CareRelationship.objects.active` and
    `EmergencyAccess.objects.active`, the order those of `_decide`.
    """

    _cache: ClassVar[dict[tuple[str, FlagQuery | None], _DocumentLookup]] = {}

    def __init__(self, alias: str, in_statement: FlagQuery | None = None) -> None:
        # Only the alias is kept: connections are per thread, this object is shared.
        self.alias = alias
        conn = connections[alias]
        # The lockdown flag, read in the same statement (a scalar subquery), or NULL.
        flag_sql, self.flag_params = in_statement(conn) if in_statement else ("NULL", [])
        quote = conn.ops.quote_name
        self.document_fields = list(Document._meta.concrete_fields)
        self.patient_fields = list(Patient._meta.concrete_fields)
        self.document_readers = [rawsql.Reader(f, conn) for f in self.document_fields]
        self.document_pk_at = self.document_fields.index(Document._meta.pk)
        self.patient_readers = [rawsql.Reader(f, conn) for f in self.patient_fields]
        self.read_expires = rawsql.Reader(EmergencyAccess._meta.get_field("expires_at"), conn)

        def columns(alias_: str, fields: list[Field[Any, Any]]) -> str:
            return ", ".join(f"{alias_}.{quote(f.column)}" for f in fields)

        def col(model: type[Model], name: str) -> str:
            return rawsql.column(model, name, conn)

        cr, ea = CareRelationship, EmergencyAccess
        # Every name below comes from the models' metadata, every value is a parameter.
        relationship = (
            f"SELECT c.{quote(cr._meta.pk.column)} FROM {rawsql.table(cr, conn)} c"  # noqa: S608
            f" WHERE c.{col(cr, 'doctor')} = %s AND c.{col(cr, 'patient')} = d.{col(Document, 'patient')}"
            f" AND c.{col(cr, 'valid_from')} <= %s"
            f" AND (c.{col(cr, 'valid_until')} IS NULL OR c.{col(cr, 'valid_until')} > %s)"
            f" ORDER BY c.{col(cr, 'valid_from')} DESC LIMIT 1"
        )
        grant_where = (
            f" FROM {rawsql.table(ea, conn)} e"
            f" WHERE e.{col(ea, 'doctor')} = %s AND e.{col(ea, 'patient')} = d.{col(Document, 'patient')}"
            f" AND e.{col(ea, 'granted_at')} <= %s AND e.{col(ea, 'expires_at')} > %s"
            f" ORDER BY e.{col(ea, 'expires_at')} DESC LIMIT 1"
        )
        grant_id = f"SELECT e.{quote(ea._meta.pk.column)}{grant_where}"
        grant_expires = f"SELECT e.{col(ea, 'expires_at')}{grant_where}"
        # FROM a one-row table and LEFT JOINs: the flag comes back even for an unknown id.
        self.sql = (
            f"SELECT {flag_sql}, {columns('d', self.document_fields)},"  # noqa: S608
            f" {columns('p', self.patient_fields)},"
            f" ({relationship}), ({grant_id}), ({grant_expires})"
            f" FROM (SELECT 1 AS one) one_row"
            f" LEFT JOIN {rawsql.table(Document, conn)} d"
            f" ON d.{quote(Document._meta.pk.column)} = %s"
            f" LEFT JOIN {rawsql.table(Patient, conn)} p"
            f" ON p.{quote(Patient._meta.pk.column)} = d.{col(Document, 'patient')}"
        )

    @classmethod
    def for_connection(
        cls, alias: str = DEFAULT_DB_ALIAS, *, in_statement: FlagQuery | None = None
    ) -> _DocumentLookup:
        # Keyed by the flag too (a bound method compares by its object): settings may name
        # another one.
        key = (alias, in_statement)
        lookup = cls._cache.get(key)
        if lookup is None:
            lookup = cls._cache[key] = cls(alias, in_statement)
        return lookup

    def fetch(
        self, document_id: str, doctor_id: int | None, moment: datetime
    ) -> tuple[bool, tuple[Document, int | None, int | None, datetime | None] | None]:
        """(lockdown on?, the document, relationship, grant id, grant end, or None)."""
        conn = connections[self.alias]
        when = conn.ops.adapt_datetimefield_value(moment)
        params = [*self.flag_params, *[doctor_id, when, when] * 3, document_id]
        with conn.cursor() as cursor:
            cursor.execute(self.sql, params)
            row = cursor.fetchone()
        if row is None:  # not with a one-row FROM; refuse rather than guess
            raise DatabaseError("the document lookup returned no row")
        locked, row = row[0] is not None, row[1:]
        split = len(self.document_fields)
        end = split + len(self.patient_fields)
        # The primary key is never NULL in a row that exists: NULL is "no such document".
        if locked or row[self.document_pk_at] is None:
            return locked, None
        document = rawsql.instance(
            Document, self.document_fields, self.document_readers, row[:split], conn
        )
        patient = rawsql.instance(
            Patient, self.patient_fields, self.patient_readers, row[split:end], conn
        )
        Document.patient.field.set_cached_value(document, patient)
        relationship, grant_id, grant_expires = row[end:]
        if grant_expires is not None:
            grant_expires = self.read_expires(grant_expires, conn)
        return False, (document, relationship, grant_id, grant_expires)
