"""PSC's back-channel logout: the provider's signed logout token ends the local session.

The endpoint is on deny-by-default's allowlist (the provider's server has no session); its
credential is the logout token, signed with the provider's key, for this client, with the
back-channel logout event. Anything else is refused with 400, audited, and ends nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.psc.process import ProviderProcess
from tests.psc.test_psc_signin import CARD, RPPS, sign_in
from vigie.accounts.deny_by_default import PUBLIC_VIEWS
from vigie.accounts.models import PscSession, Role, User
from vigie.accounts.testing import make_user
from vigie.audit.models import AuditEvent, RefusalCount

pytestmark = pytest.mark.django_db

URL = "/accounts/psc/backchannel-logout/"


@pytest.fixture
def doctor() -> User:
    return make_user("dr.martin", role=Role.DOCTOR, enrolled=False, rpps=RPPS)


def signed_in(provider: ProviderProcess) -> tuple[Client, PscSession]:
    client = Client()
    assert sign_in(client, provider, national_id=CARD).status_code == 302
    row = PscSession.objects.get(session_key=client.session.session_key)
    return client, row


def test_it_is_public_because_the_provider_calls_it_with_a_signed_token() -> None:
    # The provider's server holds no session of ours: deny-by-default would send it to the
    # login page. Its credential is the logout token, checked by the view (tests below).
    assert "accounts:psc_backchannel_logout" in PUBLIC_VIEWS


def test_it_ends_the_session_named_by_sid(provider: ProviderProcess, doctor: User) -> None:
    client, row = signed_in(provider)
    other, _ = signed_in(provider)  # another PSC session of the same doctor stays
    token = provider.logout_token(sid=row.sid, sub=row.sub)
    response = Client(enforce_csrf_checks=True).post(URL, {"logout_token": token})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert client.get("/")["Location"].startswith("/accounts/login/")
    assert other.get("/").status_code == 200
    event = AuditEvent.objects.get(action="psc.backchannel_logout", outcome="success")
    assert event.actor_id == doctor.pk
    assert event.extra["sessions"] == 1


def test_it_ends_every_session_of_the_subject_without_sid(
    provider: ProviderProcess, doctor: User
) -> None:
    first, row = signed_in(provider)
    second, _ = signed_in(provider)
    response = Client().post(URL, {"logout_token": provider.logout_token(sub=row.sub)})
    assert response.status_code == 200
    for client in (first, second):
        assert client.get("/")["Location"].startswith("/accounts/login/")
    assert not PscSession.objects.exists()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("other_key", "bad_signature"),
        ("with_nonce", "bad_logout_token"),
        ("no_event", "bad_logout_token"),
    ],
)
def test_attack_forged_logout_token(
    provider: ProviderProcess, doctor: User, mode: str, reason: str
) -> None:
    client, row = signed_in(provider)
    token = provider.logout_token(sid=row.sid, sub=row.sub, mode=mode)
    response = Client().post(URL, {"logout_token": token})
    assert response.status_code == 400
    assert client.get("/").status_code == 200  # nothing ended
    event = AuditEvent.objects.get(action="psc.backchannel_logout")
    assert (event.outcome, event.reason) == ("denied", reason)


def test_attack_id_token_posted_as_logout_token(provider: ProviderProcess, doctor: User) -> None:
    client, _ = signed_in(provider)
    for junk in ("", "not.a.jwt", "x" * 20000):
        assert Client().post(URL, {"logout_token": junk}).status_code == 400
    assert Client().get(URL).status_code == 405
    assert client.get("/").status_code == 200


def test_attack_flood_of_junk_is_counted_then_throttled(settings: Any) -> None:
    settings.VIGIE_REFUSALS_PER_MINUTE = 3
    answers = [Client().post(URL, {"logout_token": "junk"}).status_code for _ in range(5)]
    assert answers == [400, 400, 400, 429, 429]
    # One event now for the source's minute, the rest in the minute's summary: a flood
    # cannot grow the audit chain one event per request.
    assert AuditEvent.objects.filter(action="psc.backchannel_logout").count() == 1
    counted = RefusalCount.objects.filter(action="psc.backchannel_logout")
    assert sum(c.count for c in counted) == 5


def test_attack_flood_of_made_up_callbacks_is_counted(provider: ProviderProcess) -> None:
    for _ in range(5):
        response = Client().get("/accounts/psc/callback/?code=x&state=made-up&continue=1")
        assert response.status_code == 400
    (event,) = AuditEvent.objects.filter(action="psc.refused", reason="state_mismatch")
    assert event.extra["count"] == 1
    assert RefusalCount.objects.get(action="psc.refused", reason="state_mismatch").count == 5
