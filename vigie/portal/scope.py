"""The portal's way to the access helpers: look up a patient or document in the user's
scope, and audit every refusal.

Views call these, never `Patient.objects.get(...)`: `test_one_door` fails the build when a
view that takes a patient or document id does not. A refusal and an unknown id both answer
404 and both leave an audit event, so probing for ids shows up in the audit trail (and in
its anomaly rules) without telling the prober anything. During a lockdown the lookups raise
`LockedDown` (a 503) for every id; that refusal is audited too, so the investigation of an
exposure sees who still tried to read what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.http import Http404, HttpRequest

from vigie.audit.log import record
from vigie.records.access import (
    Action,
    Decision,
    LockedDown,
    OutOfScope,
    get_document_or_404,
    get_patient_or_404,
)
from vigie.records.models import Document, Patient

UNKNOWN = "unknown_or_malformed_id"
LOCKDOWN = "lockdown"
_T = TypeVar("_T")
# Audit rows keep the requested id for the investigation, bounded so a junk URL stays small.
_MAX_ID_IN_AUDIT = 80


def _audit_refusals(
    event: str, request: HttpRequest, requested_id: str, action: Action, lookup: Callable[[], _T]
) -> _T:
    """Run `lookup`; on a 404 (out of scope or unknown) or a lockdown, record `event` and
    re-raise."""
    try:
        return lookup()
    except LockedDown:
        record(
            event,
            request=request,
            outcome="denied",
            reason=LOCKDOWN,
            extra={"action": action, "requested_id": requested_id[:_MAX_ID_IN_AUDIT]},
        )
        raise
    except OutOfScope as refusal:
        record(
            event,
            request=request,
            patient=refusal.patient,
            document=refusal.document,
            outcome="denied",
            reason=refusal.decision.reason,
            extra={"action": action},
        )
        raise
    except Http404:
        record(
            event,
            request=request,
            outcome="denied",
            reason=UNKNOWN,
            extra={"action": action, "requested_id": requested_id[:_MAX_ID_IN_AUDIT]},
        )
        raise


def patient_in_scope_or_404(
    request: HttpRequest, public_id: str, action: Action = "view"
) -> tuple[Patient, Decision]:
    return _audit_refusals(
        "patient.view.denied",
        request,
        public_id,
        action,
        lambda: get_patient_or_404(request, public_id, action),
    )


def document_in_scope_or_404(
    request: HttpRequest, document_id: str, action: Action
) -> tuple[Document, Decision]:
    return _audit_refusals(
        "document.read.denied",
        request,
        document_id,
        action,
        lambda: get_document_or_404(request, document_id, action),
    )
