"""Issue 21 part 5: the admin names django-otp's models in French too, not only its apps.

django-otp names them with plain strings that no catalog can translate;
vigie/accounts/third_party_apps.py replaces them with lazy translations of the same words.
"""

from __future__ import annotations

import html

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState
from django.test import Client
from django.utils import translation
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts.models import User
from vigie.accounts.testing import log_in

pytestmark = pytest.mark.django_db

FRENCH = {
    "TOTP device": "application d'authentification (TOTP)",
    "static device": "liste de codes de secours",
    "static token": "code de secours",
}


def test_the_admins_permission_list_names_the_second_factor_models_in_french(
    admin_user: User,
) -> None:
    client = Client(headers={"accept-language": "fr"})
    log_in(client, admin_user)
    response = client.get("/admin/auth/group/add/")
    assert response.status_code == 200
    body = html.unescape(response.content.decode())
    for english, french in FRENCH.items():
        assert f"| {french} |" in body, french
        assert f"| {english} |" not in body, english


def test_the_english_admin_keeps_the_english_names() -> None:
    with translation.override("en"):
        assert [str(m._meta.verbose_name) for m in (TOTPDevice, StaticDevice, StaticToken)] == [
            "TOTP device",
            "static device",
            "static token",
        ]
    with translation.override("fr"):
        assert str(ContentType.objects.get_for_model(StaticToken)) == (
            "Codes de secours | code de secours"
        )
        assert str(StaticToken._meta.verbose_name_plural) == "codes de secours"


def test_renaming_them_asks_for_no_migration_of_a_third_party_app() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(
        graph=loader.graph
    )
    assert "otp_totp" not in changes
    assert "otp_static" not in changes
