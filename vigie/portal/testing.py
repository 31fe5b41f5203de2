"""Helpers for tests of any app that use the portal: care relationships, emergency grants,
a current second-factor code (plain code, no pytest: see tests/test_test_helpers.py)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from vigie.accounts.models import User
from vigie.accounts.testing import fresh_code, totp_device
from vigie.records.models import CareRelationship, EmergencyAccess, Patient


def current_code(user: User) -> str:
    return fresh_code(totp_device(user))


def relate(doctor: User, patient: Patient, *, expired: bool = False) -> CareRelationship:
    now = timezone.now()
    if expired:
        return CareRelationship.objects.create(
            doctor=doctor,
            patient=patient,
            role="treating",
            valid_from=now - timedelta(days=30),
            valid_until=now - timedelta(days=1),
        )
    return CareRelationship.objects.create(
        doctor=doctor, patient=patient, role="treating", valid_from=now - timedelta(days=1)
    )


def grant(doctor: User, patient: Patient, *, expired: bool = False) -> EmergencyAccess:
    start = timezone.now() - (timedelta(hours=5) if expired else timedelta(minutes=5))
    return EmergencyAccess.objects.create(
        doctor=doctor,
        patient=patient,
        reason="vital_emergency",
        justification="Patient admitted unconscious to the emergency room",
        granted_at=start,
        expires_at=start + timedelta(hours=4),
    )
