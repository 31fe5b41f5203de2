from __future__ import annotations

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.test import Client

from vigie.accounts.hashers import VigieArgon2PasswordHasher
from vigie.accounts.models import User
from vigie.accounts.testing import PASSWORD, make_user

pytestmark = pytest.mark.django_db
REAL_HASHER = True


def test_it_stores_passwords_with_argon2id_at_owasp_cost() -> None:
    user = make_user("dr.hash")
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    assert isinstance(identify_hasher(user.password), VigieArgon2PasswordHasher)
    assert user.check_password(PASSWORD)


def test_it_upgrades_an_older_hash_at_the_next_login(client: Client) -> None:
    user = make_user("dr.old")
    # A hash made with Django's default Argon2 parameters before this hasher existed.
    from django.contrib.auth.hashers import Argon2PasswordHasher

    User.objects.filter(pk=user.pk).update(
        password=Argon2PasswordHasher().encode(PASSWORD, Argon2PasswordHasher().salt())
    )
    client.post("/accounts/login/", {"username": "dr.old", "password": PASSWORD})
    user.refresh_from_db()
    assert "$m=19456,t=2,p=1$" in user.password
