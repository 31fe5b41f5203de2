"""The results inbox: which documents of a doctor's patients this doctor has not opened yet.

Read state is derived from the audit trail, not stored beside it. The door already appends
`document.read` / `document.download` (actor id, document id) before it serves a byte, so
"opened by this doctor" is "such an event exists"; "mark as read" appends
`document.marked_read`, the same shape. Reading a document therefore costs no write of its
own, the state survives reloads and filters (unlike the per-page "last visit" it replaces),
and it cannot disagree with what the auditor sees. The audit index
`audit_actor_document_idx` (actor_id, document_id) makes the test one index seek per
document on SQLite; PostgreSQL picks between that and one hash anti-join over the doctor's
own events (plans and times: bench/inbox_plan.py).

Lab results with an abnormal or critical value (issue 21 part 1, with the lab-results work)
plug in at `inbox_documents()`: annotate the queryset there, and render the marker in
`portal/_result_marker.html`, which every list of documents includes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import HttpRequest

from vigie.audit import tags
from vigie.audit.log import record, together
from vigie.audit.models import AuditEvent
from vigie.records.access import UserLike, patients_in_scope
from vigie.records.models import Document, Patient


def opened(user: UserLike) -> Exists:
    """True for a document (the outer query's row) that `user` has opened or marked read."""
    return Exists(
        AuditEvent.objects.filter(
            actor_id=user.pk, document_id=OuterRef("pk"), action__in=tags.OPENED
        )
    )


def with_read_state(documents: QuerySet[Document], user: UserLike) -> QuerySet[Document]:
    """`documents`, each with `opened` (bool): has this doctor opened it yet."""
    return documents.annotate(opened=opened(user))


def unread(user: UserLike) -> QuerySet[Document]:
    """Every document of the user's patients (their scope, the access rule's) not yet opened
    by the user. Raises LockedDown during a lockdown, like the scope itself."""
    return Document.objects.filter(patient__in=patients_in_scope(user)).filter(~opened(user))


def inbox_documents(user: UserLike) -> QuerySet[Document]:
    """The inbox, newest arrival first, with each document's patient."""
    return unread(user).select_related("patient").order_by("-received_at", "pk")


def unread_total(user: UserLike) -> int:
    return unread(user).count()


def unread_counts(user: UserLike, patients: Iterable[Patient] | None = None) -> dict[int, int]:
    """patient pk → how many of that patient's documents the user has not opened (0 omitted),
    for `patients`, or for every patient in scope (one pass: the total and the list of
    patients with news come from the same query)."""
    documents = unread(user)
    if patients is not None:
        wanted = [patient.pk for patient in patients]
        if not wanted:
            return {}
        documents = documents.filter(patient_id__in=wanted)
    rows = documents.values("patient_id").annotate(count=Count("pk")).order_by()
    return {row["patient_id"]: row["count"] for row in rows}


def mark_read(request: HttpRequest, documents: QuerySet[Document], *, scope: str) -> int:
    """Record that the requesting doctor has seen `documents` (those not opened yet): one
    `document.marked_read` event each, all in one transaction and one append. Returns how
    many were marked. Raises AuditUnavailable if the trail cannot be written (then nothing
    is marked: the state *is* the trail)."""
    user = request.user
    with transaction.atomic(), together():
        pending = list(
            documents.filter(~opened(user)).select_related("patient").order_by("received_at", "pk")
        )
        for document in pending:
            record(
                tags.DOCUMENT_MARKED_READ,
                request=request,
                patient=document.patient,
                document=document,
                extra={"scope": scope},
            )
    return len(pending)


def unread_of_patient(
    user: UserLike, patient: Patient, received_until: datetime
) -> QuerySet[Document]:
    """The patient's documents the user has not opened, received by `received_until`: "mark
    this patient's documents as read" covers what the page showed, not what arrived since."""
    return unread(user).filter(patient=patient, received_at__lte=received_until)
