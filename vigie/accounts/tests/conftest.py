from __future__ import annotations

from typing import Any

import pytest

from vigie.accounts.models import Role, User
from vigie.accounts.testing import make_user


@pytest.fixture(autouse=True)
def _plain_http(settings: Any) -> None:
    # pytest-django imports the settings before the root conftest sets VIGIE_MODE=test, so
    # the suite may run with production's HTTPS redirect; these tests speak plain HTTP.
    settings.SECURE_SSL_REDIRECT = False
    settings.VIGIE_MODE = "test"


@pytest.fixture(autouse=True)
def _fast_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    # Argon2 at production cost takes ~0.1 s a hash and these tests hash hundreds of times;
    # A module with REAL_HASHER = True (test_hashers.py) keeps the production hasher.
    if not getattr(request.module, "REAL_HASHER", False):
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def doctor(db: None) -> User:
    return make_user("dr.house", role=Role.DOCTOR, first_name="Gregory", last_name="House")


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user("it.admin", role=Role.ADMIN)


@pytest.fixture
def auditor(db: None) -> User:
    return make_user("dpo", role=Role.AUDITOR)


@pytest.fixture
def newcomer(db: None) -> User:
    """A doctor logging in for the first time: no authenticator yet."""
    return make_user("dr.new", role=Role.DOCTOR, enrolled=False)
