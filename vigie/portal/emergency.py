"""Break-the-glass: find a patient by exact identifier, then grant time-limited access.

`grant_emergency_access` is an action function in Zulip's manner: the grant and its audit
event commit together or not at all; the alert to the auditor follows the commit.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from vigie.accounts.models import User
from vigie.accounts.otp import verify_code
from vigie.alerts.services import raise_alert
from vigie.audit import tags
from vigie.audit.log import record
from vigie.records.access import ensure_served
from vigie.records.models import EmergencyAccess, Patient

logger = logging.getLogger(__name__)


class SecondFactorRefused(Exception):
    """The code was wrong, already used, or the account is locked out: no grant."""


def find_patient_by_identifiers(
    *, ins: str = "", ipp: str = "", birth_date: date | None = None
) -> Patient | None:
    """Exact match only. Every identifier given must agree; an IPP needs the birth date.

    Returns None for "no such patient" and for "identifiers that disagree" alike, so the
    caller cannot tell them apart either. Raises LockedDown during a lockdown: the lookup
    reaches beyond the doctor's scope, so it is the last one to keep open.
    """
    ensure_served()
    if ins:
        candidates = Patient.objects.filter(ins=ins)
        if ipp:
            candidates = candidates.filter(ipp=ipp)
    elif ipp and birth_date is not None:
        candidates = Patient.objects.filter(ipp=ipp)
    else:
        return None
    if birth_date is not None:
        candidates = candidates.filter(birth_date=birth_date)
    return candidates.first()


def grant_emergency_access(
    request: HttpRequest,
    doctor: User,
    patient: Patient,
    *,
    reason: str,
    justification: str,
    code: str,
    at: datetime | None = None,
) -> EmergencyAccess:
    """Check the second factor, then store the grant and its audit event in one transaction,
    then alert the auditor. Raises SecondFactorRefused (nothing stored but the audit event
    of the refusal) or AuditUnavailable (nothing stored at all)."""
    if not verify_code(doctor, code, request=request):
        record(
            "emergency.grant.denied",
            request=request,
            actor=doctor,
            patient=patient,
            outcome="denied",
            reason="second_factor_refused",
        )
        raise SecondFactorRefused
    granted_at = at or timezone.now()
    grant = EmergencyAccess(
        doctor=doctor,
        patient=patient,
        reason=reason,
        justification=justification.strip(),
        granted_at=granted_at,
        expires_at=granted_at + timedelta(hours=settings.VIGIE_EMERGENCY_ACCESS_HOURS),
    )
    grant.full_clean()
    with transaction.atomic():
        grant.save()
        record(
            tags.EMERGENCY_GRANT,
            request=request,
            actor=doctor,
            patient=patient,
            reason=grant.justification,
            extra={
                "grant_id": grant.pk,
                "emergency_reason": grant.reason,
                "expires_at": grant.expires_at.isoformat(),
            },
        )
    _alert_auditor(grant)
    return grant


def _alert_auditor(grant: EmergencyAccess) -> None:
    # Names and the IPP stay out of alert channels (e-mail, webhooks leave the building): the
    # auditor follows the grant id and the patient's public id into Vigie to see who and why.
    try:
        raise_alert(
            "emergency.access",
            severity="warning",
            summary=(
                f"Emergency access by {grant.doctor.get_username()} to patient "
                f"{grant.patient.public_id} until {grant.expires_at:%Y-%m-%d %H:%M %Z}"
            ),
            details={
                "grant_id": grant.pk,
                "doctor": grant.doctor.get_username(),
                "patient_ipp": grant.patient.ipp,
                "patient_ref": grant.patient.public_id,
                "reason": grant.reason,
                "granted_at": grant.granted_at.isoformat(),
                "expires_at": grant.expires_at.isoformat(),
            },
            dedupe_key=f"emergency.access:{grant.pk}",
        )
    except Exception:
        # The grant and its audit event are committed, and the auditor reviews every
        # emergency.grant event anyway; a broken alert channel must not turn a granted
        # emergency into an error page at the bedside. It is logged loudly instead.
        logger.exception("could not raise the alert for emergency access %s", grant.pk)
