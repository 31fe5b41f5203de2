from __future__ import annotations

from base64 import b32decode

import pytest
from django.test import Client
from django_otp.oath import TOTP

from vigie.accounts.demo import enrol_totp
from vigie.accounts.models import User
from vigie.accounts.testing import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def test_it_enrols_a_demo_account_with_a_usable_secret(client: Client) -> None:
    user: User = make_user("dr.demo", enrolled=False)
    secret = enrol_totp(user)
    code = f"{TOTP(b32decode(secret)).token():06d}"
    client.post("/accounts/login/", {"username": "dr.demo", "password": PASSWORD})
    response = client.post("/accounts/verify/", {"code": code})
    assert response["Location"] == "/"
