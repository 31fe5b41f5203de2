"""Personas and a signed-in client for the portal tests.

`signed_in(user)` gives a fresh client the session the real login produces (password,
verified second factor, recent re-authentication; see `vigie.accounts.testing.log_in`):
the deny-by-default middleware lets it through and the views see a real login.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.accounts.testing import fresh_code, log_in, make_user, totp_device
from vigie.records.models import CareRelationship, EmergencyAccess, Patient
from vigie.records.tests.factories import make_doctor


@pytest.fixture(autouse=True)
def _portal_env(settings, vault_home: Path) -> None:
    # Each test gets its own vault (the fixture), and audit events are written on the
    # calling thread so they are visible inside the test's transaction.
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    # pytest-django may import the settings before the root conftest sets VIGIE_MODE=test,
    # leaving production's HTTPS redirect on; these tests speak plain HTTP.
    settings.SECURE_SSL_REDIRECT = False


def current_code(user: User) -> str:
    return fresh_code(totp_device(user))


@pytest.fixture
def signed_in() -> Callable[[User], Client]:
    def sign_in(user: User) -> Client:
        client = Client()
        log_in(client, user)
        return client

    return sign_in


@pytest.fixture
def doctor(db) -> User:
    return make_doctor("dr.house")


@pytest.fixture
def colleague(db) -> User:
    return make_doctor("dr.wilson")


@pytest.fixture
def admin_user(db) -> User:
    return make_user("it.admin", role=Role.ADMIN)


@pytest.fixture
def auditor(db) -> User:
    return make_user("dpo", role=Role.AUDITOR)


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
