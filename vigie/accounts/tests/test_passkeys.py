"""Passkeys, server side: each ceremony through the test client, answered by a software
authenticator with real keys and signatures (soft_authenticator.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from vigie.accounts import passkeys, signin_policy
from vigie.accounts.models import Passkey, PasskeyChallenge, User
from vigie.accounts.sessions import AUTH_AT
from vigie.accounts.testing import (
    ORIGIN,
    PASSWORD,
    SoftAuthenticator,
    browser,
    last,
    log_in,
    post_json,
    register,
    registered,
    sign_in_alone,
)
from vigie.alerts.models import Alert
from vigie.audit import tags
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    # The portal is reached as http://localhost (the demo's address): the RP ID is its name.
    settings.ALLOWED_HOSTS = ["localhost", "evil.localhost"]
    settings.CSRF_TRUSTED_ORIGINS = []


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


# --- the login page ---


def test_the_login_page_offers_passkeys_with_a_static_script_only() -> None:
    html = browser().get("/accounts/login/").content.decode()
    assert 'data-passkey="login"' in html
    assert 'data-mediation="conditional"' in html
    assert '<script src="/static/vigie/passkeys.js" defer></script>' in html
    assert html.count("<script") == 1


def test_the_login_page_opened_by_ip_address_points_to_the_name(settings: Any) -> None:
    # A passkey is bound to the name: at http://127.0.0.1:8000 the browser would refuse it.
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    html = Client(HTTP_HOST="127.0.0.1:8000").get("/accounts/login/").content.decode()
    assert 'id="passkey-elsewhere"' in html
    assert 'href="http://localhost:8000/accounts/login/"' in html
    assert "<script" not in html


# --- registration ---


def test_it_registers_a_named_passkey_and_audits_it(doctor: User) -> None:
    registered(doctor)
    passkey = Passkey.objects.get(user=doctor)
    assert passkey.name == "office PC"
    assert passkey.confirmed
    assert passkey.revoked_at is None
    assert passkey.transports == ["internal"]
    assert last(tags.PASSKEY_REGISTERED).actor_username == doctor.username
    # The WebAuthn user id is opaque: never the identifier.
    assert doctor.username.encode() not in bytes(passkey.user_handle)


def test_it_keeps_several_passkeys_per_account(doctor: User) -> None:
    client = browser()
    log_in(client, doctor)
    for name in ("office PC", "phone"):
        assert register(client, SoftAuthenticator(ORIGIN), name).status_code == 200
    assert sorted(p.name for p in passkeys.active_passkeys(doctor)) == ["office PC", "phone"]


def test_attack_registration_needs_a_fresh_second_factor(doctor: User) -> None:
    # A stolen session cookie, hours old, must not add the thief's passkey to the account.
    client = browser()
    log_in(client, doctor)
    session = client.session
    session["vigie_second_factor_at"] = session[AUTH_AT] - 3600
    session.save()
    response = post_json(client, "/accounts/passkeys/register/options/")
    assert response.status_code == 403
    assert response.json()["redirect"].startswith("/accounts/reauth/")
    assert not PasskeyChallenge.objects.exists()


def test_attack_registration_on_another_origin_is_refused(doctor: User) -> None:
    client = browser()
    log_in(client, doctor)
    options = post_json(client, "/accounts/passkeys/register/options/").json()
    credential = SoftAuthenticator(ORIGIN).create(options, origin="http://evil.localhost")
    response = post_json(client, "/accounts/passkeys/register/", {"credential": credential})
    assert response.status_code == 400
    assert not Passkey.objects.exists()
    assert last(tags.PASSKEY_REGISTRATION_REFUSED).reason == "wrong_origin"


# --- a passkey alone ---


def test_it_signs_in_with_a_passkey_alone(doctor: User) -> None:
    key = registered(doctor)
    client = browser()
    response = sign_in_alone(client, key)
    assert response.status_code == 200, response.content
    assert response.json() == {"redirect": "/"}
    assert client.session[signin_policy.SESSION_METHOD] == signin_policy.PASSKEY
    assert client.get("/").status_code == 200
    used = last(tags.PASSKEY_USED)
    assert used.actor_username == doctor.username
    assert Passkey.objects.get(user=doctor).sign_count == 1


def test_attack_a_passkey_alone_needs_user_verification(doctor: User) -> None:
    key = registered(doctor)
    key.user_verified = False  # someone touched the key, nobody typed the PIN
    response = sign_in_alone(browser(), key)
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "user_not_verified"


def test_attack_an_assertion_from_another_origin_is_refused(doctor: User) -> None:
    # A sibling site under the RP ID's domain may ask the browser for the passkey; the
    # signed origin gives it away.
    key = registered(doctor)
    response = sign_in_alone(browser(), key, origin="http://evil.localhost")
    assert response.status_code == 400
    refused = last(tags.PASSKEY_REFUSED)
    assert refused.reason == "wrong_origin"
    assert refused.extra["origin"] == "http://evil.localhost"


def test_attack_an_assertion_for_another_rp_id_is_refused(doctor: User) -> None:
    key = registered(doctor)
    response = sign_in_alone(browser(), key, rp_id="evil.example")
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "wrong_rp_id"


def test_attack_a_replayed_assertion_is_refused(doctor: User) -> None:
    key = registered(doctor)
    client = browser()
    options = post_json(client, "/accounts/passkeys/login/options/").json()
    credential = key.get(options)
    assert (
        post_json(client, "/accounts/passkeys/login/", {"credential": credential}).status_code
        == 200
    )
    # Same assertion again, from a fresh session that asked for a challenge of its own.
    thief = browser()
    post_json(thief, "/accounts/passkeys/login/options/")
    response = post_json(thief, "/accounts/passkeys/login/", {"credential": credential})
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "wrong_challenge"


def test_attack_a_challenge_is_bound_to_its_session(doctor: User) -> None:
    key = registered(doctor)
    victim, thief = browser(), browser()
    options = post_json(victim, "/accounts/passkeys/login/options/").json()
    response = post_json(thief, "/accounts/passkeys/login/", {"credential": key.get(options)})
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "no_challenge"
    assert not is_verified_client(thief)


def test_attack_a_challenge_is_single_use(doctor: User) -> None:
    key = registered(doctor)
    client = browser()
    options = post_json(client, "/accounts/passkeys/login/options/").json()
    first = key.get(options)
    second = key.get(options)  # a second signature over the same challenge
    assert post_json(client, "/accounts/passkeys/login/", {"credential": first}).status_code == 200
    response = post_json(client, "/accounts/passkeys/login/", {"credential": second})
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "no_challenge"


def test_attack_a_cloned_authenticator_is_refused_revoked_and_alerted(doctor: User) -> None:
    key = registered(doctor)
    assert sign_in_alone(browser(), key).status_code == 200
    assert sign_in_alone(browser(), key).status_code == 200  # the counter is now 2
    # A copy of the key made earlier answers with a counter that did not move on.
    response = sign_in_alone(browser(), key, count=2)
    assert response.status_code == 403
    passkey = Passkey.objects.get(user=doctor)
    assert not passkey.confirmed
    assert passkey.revoked_reason == "clone_suspected"
    alert = Alert.objects.get(kind=passkeys.CLONE_ALERT)
    assert alert.severity == "critical"
    assert alert.details["username"] == doctor.username
    event = last(tags.PASSKEY_CLONE_SUSPECTED)
    assert event.extra["stored_count"] == 2
    assert event.extra["presented_count"] == 2
    # And the genuine key, counter ahead, is refused too now: one of the two is a copy.
    assert sign_in_alone(browser(), key).status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "revoked"


def test_an_authenticator_without_a_counter_is_not_a_clone(doctor: User) -> None:
    # Many platform passkeys (synced ones) always send 0: nothing to compare.
    key = registered(doctor)
    assert sign_in_alone(browser(), key, count=0).status_code == 200
    assert sign_in_alone(browser(), key, count=0).status_code == 200
    assert not Alert.objects.filter(kind=passkeys.CLONE_ALERT).exists()


def test_attack_a_forged_signature_is_refused(doctor: User) -> None:
    key = registered(doctor)
    impostor = SoftAuthenticator(ORIGIN)  # another private key, the same credential id
    impostor.credential_id, impostor.user_handle = key.credential_id, key.user_handle
    response = sign_in_alone(browser(), impostor)
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "bad_signature"


def test_attack_passkey_guesses_are_locked_out_like_passwords(doctor: User, settings: Any) -> None:
    settings.VIGIE_LOCKOUT_FAILURES = 3
    key = registered(doctor)
    client = browser()
    statuses = [
        sign_in_alone(client, key, origin="http://evil.localhost").status_code for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    # Locked: even the right passkey is not looked at now.
    response = sign_in_alone(client, key)
    assert response.status_code == 429
    assert Passkey.objects.get(user=doctor).sign_count == 0


def test_a_malformed_answer_gets_a_clear_refusal(doctor: User) -> None:
    client = browser()
    post_json(client, "/accounts/passkeys/login/options/")
    for body in (b"not json", b"[]", b'{"credential": 3}', b'{"credential": {"id": "x"}}'):
        response = client.post("/accounts/passkeys/login/", body, content_type="application/json")
        assert response.status_code == 400
        assert "error" in response.json()


# --- a passkey after the password ---


def test_it_uses_a_passkey_as_the_second_factor(doctor: User) -> None:
    key = registered(doctor)
    client = browser()
    response = client.post("/accounts/login/", {"username": doctor.username, "password": PASSWORD})
    assert response["Location"] == "/accounts/passkeys/verify/"
    assert client.get("/accounts/passkeys/verify/").status_code == 200
    options = post_json(client, "/accounts/passkeys/second-factor/options/").json()
    assert [c["id"] for c in options["allowCredentials"]] == [Passkey.objects.get().credential_id]
    response = post_json(
        client, "/accounts/passkeys/second-factor/", {"credential": key.get(options)}
    )
    assert response.status_code == 200, response.content
    assert client.session[signin_policy.SESSION_METHOD] == signin_policy.PASSWORD_PASSKEY
    assert client.get("/").status_code == 200


def test_attack_another_accounts_passkey_is_not_a_second_factor(
    doctor: User, auditor: User
) -> None:
    theirs = registered(auditor)
    registered(doctor)
    client = browser()
    client.post("/accounts/login/", {"username": doctor.username, "password": PASSWORD})
    options = post_json(client, "/accounts/passkeys/second-factor/options/").json()
    response = post_json(
        client, "/accounts/passkeys/second-factor/", {"credential": theirs.get(options)}
    )
    assert response.status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "other_account"
    assert not is_verified_client(client)


# --- revocation ---


def test_it_revokes_a_passkey_which_then_no_longer_signs_in(doctor: User) -> None:
    key = registered(doctor)
    client = browser()
    log_in(client, doctor)
    passkey = Passkey.objects.get(user=doctor)
    response = client.post(f"/accounts/passkeys/{passkey.pk}/revoke/")
    assert response.status_code == 302
    assert last(tags.PASSKEY_REVOKED).extra["passkey_id"] == passkey.pk
    assert sign_in_alone(browser(), key).status_code == 400
    assert last(tags.PASSKEY_REFUSED).reason == "revoked"


def test_attack_revoking_another_accounts_passkey_is_not_found(doctor: User, auditor: User) -> None:
    registered(auditor)
    client = browser()
    log_in(client, doctor)
    theirs = Passkey.objects.get(user=auditor)
    assert client.post(f"/accounts/passkeys/{theirs.pk}/revoke/").status_code == 404
    assert Passkey.objects.get(pk=theirs.pk).confirmed


def test_a_credentials_reset_revokes_the_passkeys(doctor: User) -> None:
    from vigie.accounts import otp

    registered(doctor)
    otp.revoke_all_devices(doctor)
    assert not Passkey.objects.filter(user=doctor, confirmed=True).exists()


# --- where the ceremony may happen ---


def test_the_rp_id_and_origins_come_from_the_site_settings(settings: Any, rf: Any) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "portal.clinic.example", "localhost"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert passkeys.rp_id() == "portal.clinic.example"  # an IP address cannot be an RP ID
    request = rf.get("/", HTTP_HOST="portal.clinic.example:8443")
    assert passkeys.expected_origins(request) == ["http://portal.clinic.example:8443"]
    assert passkeys.expected_origins(rf.get("/", HTTP_HOST="localhost")) == []
    settings.CSRF_TRUSTED_ORIGINS = ["https://resultats.clinique.example/", "https://*.example"]
    assert passkeys.rp_id() == "resultats.clinique.example"
    assert passkeys.expected_origins(request) == ["https://resultats.clinique.example"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.ALLOWED_HOSTS = ["127.0.0.1", "[::1]", "*"]
    assert passkeys.rp_id() is None


def is_verified_client(client: Client) -> bool:
    from django.contrib.auth import SESSION_KEY
    from django_otp import DEVICE_ID_SESSION_KEY

    session = client.session
    return SESSION_KEY in session and DEVICE_ID_SESSION_KEY in session


# --- re-authentication ---


def test_a_passkey_renews_the_second_factor_before_a_sensitive_action(doctor: User) -> None:
    key = registered(doctor)
    client = browser()
    log_in(client, doctor)
    session = client.session
    session["vigie_second_factor_at"] = session[AUTH_AT] - 3600
    session.save()
    assert client.get("/accounts/passkeys/")["Location"].startswith("/accounts/reauth/")
    page = client.get("/accounts/reauth/?next=/accounts/passkeys/").content.decode()
    assert 'data-passkey="reauth"' in page
    options = post_json(client, "/accounts/passkeys/reauth/options/").json()
    response = post_json(
        client,
        "/accounts/passkeys/reauth/",
        {"credential": key.get(options), "next": "/accounts/passkeys/"},
    )
    assert response.json() == {"redirect": "/accounts/passkeys/"}
    assert client.get("/accounts/passkeys/").status_code == 200


def test_attack_registration_attempts_are_locked_out_like_passwords(
    doctor: User, settings: Any
) -> None:
    settings.VIGIE_LOCKOUT_FAILURES = 2
    client = browser()
    log_in(client, doctor)
    statuses = []
    for _ in range(3):
        options = post_json(client, "/accounts/passkeys/register/options/").json()
        forged = SoftAuthenticator(ORIGIN).create(options, origin="http://evil.localhost")
        statuses.append(
            post_json(client, "/accounts/passkeys/register/", {"credential": forged}).status_code
        )
    assert statuses == [400, 400, 429]
    assert not Passkey.objects.exists()


def test_the_admin_says_how_many_passkeys_never_which(doctor: User) -> None:
    from django.contrib import admin
    from django.utils import translation

    registered(doctor)
    with translation.override("en"):
        shown = admin.site._registry[User].second_factor(doctor)  # type: ignore[attr-defined]
    assert shown == "authenticator enrolled, 1 passkey"
    assert Passkey.objects.get().credential_id not in shown
