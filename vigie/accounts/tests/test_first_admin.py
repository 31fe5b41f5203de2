"""The first administrator of a new installation is made with `vigie createsuperuser`."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts.models import Role, User

pytestmark = pytest.mark.django_db


def test_createsuperuser_makes_an_it_administrator(monkeypatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Xy7!correct-horse-battery")
    call_command(
        "createsuperuser",
        interactive=False,
        username="it.admin",
        email="informatique@clinique.example",
        verbosity=0,
    )
    admin = User.objects.get(username="it.admin")
    assert admin.role == Role.ADMIN
    assert admin.is_superuser
    assert admin.is_staff
    # No second factor yet: enrolled at the first login, like everyone.
    assert not TOTPDevice.objects.filter(user=admin).exists()
