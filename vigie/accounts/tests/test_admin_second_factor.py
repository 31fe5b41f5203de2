"""The admin's user list says which second factor(s) each account has, in the admin's language.

A doctor who signs in only with Pro Santé Connect (the CPS card or e-CPS proves both factors)
or only with passkeys has enrolled no authenticator app, and used to be listed as "not
enrolled": IT would then "fix" an account that needed nothing.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from vigie.accounts.models import Passkey, Role, User
from vigie.accounts.psc.signin import device_for
from vigie.accounts.testing import log_in, make_user

pytestmark = pytest.mark.django_db

LIST = "/admin/accounts/user/"


@pytest.fixture(autouse=True)
def _audit_inline(settings: Any) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False


def _passkey(user: User, number: int, *, revoked: bool = False) -> None:
    Passkey.objects.create(
        user=user,
        name=f"key {number}",
        confirmed=not revoked,
        revoked_at=timezone.now() if revoked else None,
        credential_id=f"{user.username}-{number}",
        public_key=b"cose",
        user_handle=b"handle",
    )


@pytest.fixture
def accounts(admin_user: User) -> dict[str, User]:
    psc_only = make_user("dr.carte", enrolled=False, rpps="10001234567")
    device_for(psc_only)
    passkeys_only = make_user("dr.cle", enrolled=False)
    _passkey(passkeys_only, 1)
    _passkey(passkeys_only, 2)
    _passkey(passkeys_only, 3, revoked=True)
    every = make_user("dr.tout", rpps="10007654321")
    device_for(every)
    _passkey(every, 1)
    return {
        "psc_only": psc_only,
        "passkeys_only": passkeys_only,
        "every": every,
        "nothing": make_user("dr.rien", enrolled=False),
        "totp_only": make_user("dr.code", role=Role.AUDITOR),
    }


def _column(client: Client, language: str = "en") -> dict[str, str]:
    response = client.get(LIST, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    rows = re.findall(
        r'<tr[^>]*>.*?>([a-z0-9.]+)</a>.*?<td class="field-second_factor">([^<]*)</td>',
        response.content.decode(),
        re.S,
    )
    return dict(rows)


def test_it_lists_which_second_factors_each_account_has(
    admin_user: User, accounts: dict[str, User]
) -> None:
    client = Client()
    log_in(client, admin_user)
    column = _column(client)
    assert column["dr.carte"] == "signs in with Pro Santé Connect"
    assert column["dr.cle"] == "2 passkeys"  # the revoked one does not count
    assert column["dr.code"] == "authenticator enrolled"
    assert column["dr.tout"] == (
        "authenticator enrolled, signs in with Pro Santé Connect, 1 passkey"
    )
    assert column["dr.rien"] == "not enrolled"


def test_it_says_it_in_french(admin_user: User, accounts: dict[str, User]) -> None:
    client = Client()
    log_in(client, admin_user)
    column = _column(client, "fr")
    assert column["dr.carte"] == "se connecte avec Pro Santé Connect"
    assert column["dr.cle"] == "2 clés d&#x27;accès"
    assert column["dr.rien"] == "non enregistré"


def test_the_account_page_says_it_too(admin_user: User, accounts: dict[str, User]) -> None:
    client = Client()
    log_in(client, admin_user)
    page = client.get(
        f"{LIST}{accounts['psc_only'].pk}/change/", HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "signs in with Pro Santé Connect" in page
    assert "not enrolled" not in page


def test_the_column_costs_no_query_per_row(admin_user: User, accounts: dict[str, User]) -> None:
    client = Client()
    log_in(client, admin_user)
    client.get(LIST)  # warm caches (content types, session)
    with CaptureQueriesContext(connection) as few:
        client.get(LIST)
    for number in range(10):
        more = make_user(f"dr.extra{number}", enrolled=number % 2 == 0)
        device_for(more)
        _passkey(more, 1)
    with CaptureQueriesContext(connection) as many:
        column = _column(client)
    assert len(column) >= 16
    extra = [q["sql"] for q in many.captured_queries[len(few) :]]
    assert len(many) == len(few), extra
