"""Personas and a signed-in client for the portal tests.

`signed_in(user)` gives a fresh client the session the real login produces (password,
verified second factor, recent re-authentication; see `vigie.accounts.testing.log_in`):
the deny-by-default middleware lets it through and the views see a real login.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from vigie.accounts.models import Role, User
from vigie.accounts.testing import log_in, make_user
from vigie.records.testing import make_doctor


@pytest.fixture(autouse=True)
def _portal_env(settings, vault_home: Path) -> None:
    # Each test gets its own vault (the fixture), and audit events are written on the
    # calling thread so they are visible inside the test's transaction.
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    # pytest-django may import the settings before the root conftest sets VIGIE_MODE=test,
    # leaving production's HTTPS redirect on; these tests speak plain HTTP.
    settings.SECURE_SSL_REDIRECT = False


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
