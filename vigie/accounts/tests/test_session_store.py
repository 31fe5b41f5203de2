"""Vigie's session engine answers as Django's database backend does, on the same rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from vigie.accounts.session_store import SessionStore

pytestmark = pytest.mark.django_db


def _stored(values: dict[str, object]) -> str:
    store = DjangoStore()
    store.update(values)
    store.save()
    assert store.session_key is not None
    return store.session_key


@pytest.mark.parametrize("case", ["live", "expired", "unknown", "tampered"])
def test_it_loads_what_djangos_backend_loads(case: str) -> None:
    key = _stored({"_auth_user_id": "7", "vigie_last_seen": 12.5})
    if case == "expired":
        Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    elif case == "unknown":
        key = "x" * 32
    elif case == "tampered":
        Session.objects.filter(pk=key).update(session_data="bm90IHNpZ25lZA:forged")
    ours, theirs = SessionStore(key), DjangoStore(key)
    assert ours.load() == theirs.load()
    assert ours.session_key == theirs.session_key
    if case == "live":
        assert ours.load() == {"_auth_user_id": "7", "vigie_last_seen": 12.5}
    else:
        assert ours.load() == {}
