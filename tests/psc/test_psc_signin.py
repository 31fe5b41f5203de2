"""Pro Santé Connect sign-in against a real OpenID provider process on loopback.

The provider (tests/psc/provider.py) issues PSC-shaped ID tokens and userinfo, signed with a
key pair it generates at start; Vigie's side runs through the Django test client. Each
attack is refused, leaves no signed-in session, and is audited with its reason.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from tests.psc.process import ProviderProcess
from vigie.accounts.models import PscSession, Role, User
from vigie.accounts.otp import SECOND_FACTOR_AT
from vigie.accounts.testing import make_user
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

RPPS = "10003456789"
CARD = "8" + RPPS  # PSC's SubjectNameID: the RPPS number behind its type prefix "8"


@pytest.fixture
def doctor() -> User:
    # No authenticator app at all: PSC is both factors.
    return make_user("dr.martin", role=Role.DOCTOR, enrolled=False, rpps=RPPS, first_name="Claire")


def start(client: Client, **query: str) -> str:
    response = client.get("/accounts/psc/start/", query)
    assert response.status_code == 302, response.content
    return str(response["Location"])


def sign_in(
    client: Client, provider: ProviderProcess, national_id: str = CARD, **query: str
) -> Any:
    returned = provider.authorize(start(client, **query), national_id)
    return client.get("/accounts/psc/callback/", returned)


def refusals(reason: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="psc.refused", reason=reason, outcome="denied"))


def assert_not_signed_in(client: Client) -> None:
    assert "_auth_user_id" not in client.session
    assert client.get("/")["Location"].startswith("/accounts/login/")


def test_it_signs_a_doctor_in_with_both_factors(provider: ProviderProcess, doctor: User) -> None:
    client = Client()
    response = sign_in(client, provider, next="/patients/")
    assert response.status_code == 302
    assert response["Location"] == "/patients/"
    assert client.session["_auth_user_id"] == str(doctor.pk)
    assert client.session[DEVICE_ID_SESSION_KEY].startswith("accounts.pscdevice/")
    # Past deny-by-default without a password or a TOTP code ever asked.
    assert client.get("/").status_code == 200
    events = AuditEvent.objects.filter(
        actor_id=doctor.pk, action__in=["login.success", "mfa.success"]
    )
    assert {e.action for e in events} == {"login.success", "mfa.success"}
    assert all(e.extra["method"] == "psc" and e.extra["national_id"] == CARD for e in events)
    assert events[0].extra["professions"] == ["10"]
    assert PscSession.objects.get(user=doctor).sid


def test_it_asks_psc_for_the_code_flow_with_pkce_state_nonce_and_eidas1(
    provider: ProviderProcess, doctor: User
) -> None:
    query = parse_qs(urlsplit(start(Client())).query)
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["openid scope_all"]
    assert query["acr_values"] == ["eidas1"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 20
    assert len(query["nonce"][0]) >= 20
    assert "prompt" not in query


def test_the_login_page_offers_psc_only_when_configured(settings: Any) -> None:
    assert b"psc-button" in Client().get("/accounts/login/").content
    settings.VIGIE_PSC_ENABLED = False
    assert b"psc-button" not in Client().get("/accounts/login/").content
    assert Client().get("/accounts/psc/start/").status_code == 404


def test_attack_wrong_state(provider: ProviderProcess, doctor: User) -> None:
    client = Client()
    returned = provider.authorize(start(client), CARD)
    response = client.get("/accounts/psc/callback/", {**returned, "state": "forged-state-value"})
    assert response.status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("state_mismatch")) == 1


def test_attack_callback_replayed(provider: ProviderProcess, doctor: User) -> None:
    client = Client()
    returned = provider.authorize(start(client), CARD)
    assert client.get("/accounts/psc/callback/", returned).status_code == 302
    attacker = Client()  # the same callback URL, seen in a log or a history, used again
    replayed = {**returned, "continue": "1"}  # past the same-site bounce
    assert attacker.get("/accounts/psc/callback/", replayed).status_code == 400
    assert_not_signed_in(attacker)
    assert len(refusals("state_mismatch")) == 1


def test_attack_replayed_nonce(provider: ProviderProcess, doctor: User) -> None:
    assert sign_in(Client(), provider).status_code == 302
    provider.misbehave_next("replay_nonce")  # the ID token of that earlier sign-in, again
    client = Client()
    response = sign_in(client, provider)
    assert response.status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("bad_nonce")) == 1


def test_attack_id_token_signed_by_another_key(provider: ProviderProcess, doctor: User) -> None:
    provider.misbehave_next("other_key")
    client = Client()
    assert sign_in(client, provider).status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("bad_signature")) == 1


def test_attack_id_token_for_another_audience(provider: ProviderProcess, doctor: User) -> None:
    provider.misbehave_next("other_audience")
    client = Client()
    assert sign_in(client, provider).status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("bad_aud")) == 1


def test_attack_expired_id_token(provider: ProviderProcess, doctor: User) -> None:
    provider.misbehave_next("expired")
    client = Client()
    assert sign_in(client, provider).status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("expired")) == 1


def test_attack_userinfo_of_another_professional(provider: ProviderProcess, doctor: User) -> None:
    make_user("dr.other", role=Role.DOCTOR, enrolled=False, rpps="10000000999")
    provider.misbehave_next("userinfo_mismatch")
    client = Client()
    assert sign_in(client, provider).status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("userinfo_subject_mismatch")) == 1


def test_attack_unknown_rpps(provider: ProviderProcess, doctor: User) -> None:
    accounts = User.objects.count()
    client = Client()
    response = sign_in(client, provider, national_id="810009999999")
    assert response.status_code == 403
    assert "RPPS" in response.content.decode()
    assert_not_signed_in(client)
    assert User.objects.count() == accounts  # no account is ever created from a sign-in
    (event,) = refusals("unknown_account")
    assert event.extra["national_id"] == "810009999999"


def test_attack_deactivated_account(provider: ProviderProcess, doctor: User) -> None:
    User.objects.filter(pk=doctor.pk).update(is_active=False)
    client = Client()
    assert sign_in(client, provider).status_code == 403
    assert_not_signed_in(client)
    assert len(refusals("unknown_account")) == 1


def test_attack_lower_level_of_assurance(provider: ProviderProcess, doctor: User) -> None:
    provider.misbehave_next("acr_low")
    client = Client()
    assert sign_in(client, provider).status_code == 400
    assert_not_signed_in(client)
    assert len(refusals("bad_acr")) == 1


def test_it_reads_a_signed_userinfo(provider: ProviderProcess, doctor: User) -> None:
    provider.misbehave_next("signed_userinfo")
    client = Client()
    assert sign_in(client, provider).status_code == 302
    assert client.session["_auth_user_id"] == str(doctor.pk)


def _stale_second_factor(client: Client) -> None:
    session = client.session
    session[SECOND_FACTOR_AT] = time.time() - 3600
    session.save()


def test_reauthentication_runs_psc_again_with_prompt_login_and_max_age(
    provider: ProviderProcess, doctor: User
) -> None:
    client = Client()
    sign_in(client, provider)
    _stale_second_factor(client)
    assert client.get("/accounts/password/")["Location"].startswith("/accounts/reauth/")
    assert b"psc-button" in client.get("/accounts/reauth/?next=/accounts/password/").content
    url = start(client, purpose="reauth", next="/accounts/password/")
    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == ["login"]
    assert query["max_age"] == ["60"]
    response = client.get("/accounts/psc/callback/", provider.authorize(url, CARD))
    assert response["Location"] == "/accounts/password/"
    assert client.get("/accounts/password/").status_code == 200
    assert AuditEvent.objects.filter(
        action="mfa.success", actor_id=doctor.pk, extra__purpose="reauth"
    ).exists()


def test_attack_reauthentication_with_another_doctors_card(
    provider: ProviderProcess, doctor: User
) -> None:
    make_user("dr.other", role=Role.DOCTOR, enrolled=False, rpps="10000000999")
    client = Client()
    sign_in(client, provider)
    _stale_second_factor(client)
    url = start(client, purpose="reauth", next="/accounts/password/")
    response = client.get("/accounts/psc/callback/", provider.authorize(url, "810000000999"))
    assert response.status_code == 400
    assert client.get("/accounts/password/")["Location"].startswith("/accounts/reauth/")
    assert len(refusals("reauth_other_account")) == 1


def test_it_moves_on_same_site_when_the_strict_session_cookie_was_left_out(
    provider: ProviderProcess, doctor: User
) -> None:
    # Coming back from PSC's site, a browser leaves out our SameSite=Strict session cookie.
    client = Client()
    returned = provider.authorize(start(client), CARD)
    cookie = client.cookies.pop("sessionid")
    bounce = client.get("/accounts/psc/callback/", returned)
    assert bounce.status_code == 200
    target = f"/accounts/psc/callback/?code={returned['code']}&amp;state={returned['state']}&amp;continue=1"
    assert f'content="0;url={target}"' in bounce.content.decode()
    client.cookies["sessionid"] = cookie.value  # the same-site navigation carries it
    response = client.get("/accounts/psc/callback/", {**returned, "continue": "1"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(doctor.pk)


def test_a_psc_session_ends_when_idle_like_any_other(
    provider: ProviderProcess, doctor: User
) -> None:
    from vigie.accounts.sessions import LAST_SEEN

    client = Client()
    sign_in(client, provider)
    session = client.session
    session[LAST_SEEN] = time.time() - 3600
    session.save()
    assert client.get("/")["Location"].startswith("/accounts/login/")
    assert AuditEvent.objects.filter(
        action="session.expired", actor_id=doctor.pk, reason="idle"
    ).exists()


def test_an_unreachable_provider_gets_a_clear_page_and_is_audited(settings: Any) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.VIGIE_PSC_DISCOVERY_URL = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    response = Client().get("/accounts/psc/start/")
    assert response.status_code == 502
    assert "Pro Santé Connect" in response.content.decode()
    assert len(refusals("provider_unreachable")) == 1


def test_attack_discovery_document_of_another_issuer(
    provider: ProviderProcess, doctor: User, settings: Any
) -> None:
    # The same document reached under another name: its issuer is not the URL's, so its
    # tokens' issuer would not be the one configured. Refused before anyone is sent there.
    settings.VIGIE_PSC_DISCOVERY_URL = provider.discovery_url.replace("127.0.0.1", "localhost")
    response = Client().get("/accounts/psc/start/")
    assert response.status_code == 400
    assert len(refusals("bad_metadata")) == 1
