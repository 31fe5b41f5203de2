"""VIGIE_SIGNIN_METHODS: which sign-in methods each role may use, on every request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from hypothesis import given
from hypothesis import strategies as st

from vigie.accounts import signin_policy
from vigie.accounts.models import Passkey, Role, User
from vigie.accounts.testing import (
    ORIGIN,
    PASSWORD,
    SoftAuthenticator,
    browser,
    fresh_code,
    last,
    log_in,
    make_user,
    post_json,
    register,
    registered,
    sign_in_alone,
    totp_device,
)
from vigie.audit import tags
from vigie.lib import env
from vigie.lib.env import ConfigError

ROLES = ("doctor", "admin", "auditor")
DEFAULT = {"doctor": ["password_totp"], "admin": ["passkey"], "auditor": ["passkey"]}


def read(value: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    monkeypatch.setenv("VIGIE_SIGNIN_METHODS", value)
    return env.choice_lists("VIGIE_SIGNIN_METHODS", ROLES, signin_policy.METHODS, DEFAULT)


# --- the setting ---


def test_it_reads_methods_per_role_and_keeps_the_default_of_roles_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert read(" doctor = psc, passkey ; admin=password_passkey", monkeypatch) == {
        "doctor": ["psc", "passkey"],
        "admin": ["password_passkey"],
        "auditor": ["passkey"],
    }


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("nurse=passkey", "nurse=passkey"),
        ("doctor=passkey,sms", "sms"),
        ("doctor=", "doctor"),
        ("doctor=psc;doctor=passkey", "named twice"),
        ("doctor passkey", "doctor passkey"),
    ],
)
def test_a_typo_in_the_policy_stops_the_start_with_its_reason(
    value: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="VIGIE_SIGNIN_METHODS") as error:
        read(value, monkeypatch)
    assert named in str(error.value)


_WORDS = st.sampled_from([*ROLES, *signin_policy.METHODS, "=", ",", ";", " ", "nurse", "sms"])


@given(
    st.one_of(
        st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=80),
        st.lists(_WORDS, max_size=12).map("".join),
    )
)
def test_any_text_is_a_policy_or_a_clear_refusal(value: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        try:
            result = read(value, monkeypatch)
        except ConfigError:
            return
    assert set(result) == set(ROLES)
    assert all(
        methods and set(methods) <= set(signin_policy.METHODS) for methods in result.values()
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "production",
            {
                "doctor": ["psc", "passkey", "password_passkey"],
                "admin": ["passkey", "password_passkey"],
                "auditor": ["passkey", "password_passkey"],
            },
        ),
        ("demo", {role: list(signin_policy.METHODS) for role in ROLES}),
    ],
)
def test_the_default_policy_per_mode(
    mode: str, expected: dict[str, list[str]], tmp_path: Any
) -> None:
    # Production: doctors by PSC or passkeys, IT and the DPO by passkeys only; the demo keeps
    # its seeded accounts' password and code. Read by a fresh interpreter, as a start would.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIE_", "DJANGO_"))}
    env.update(VIGIE_MODE=mode, VIGIE_HOME=str(tmp_path / "home"))
    code = "import json, vigie.settings as s; print(json.dumps(s.VIGIE_SIGNIN_METHODS))"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == expected


def test_the_roles_of_the_setting_are_the_roles_of_the_model(settings: Any) -> None:
    assert set(settings.VIGIE_SIGNIN_METHODS) == set(Role.values)


# --- enforced ---


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["localhost"]
    settings.CSRF_TRUSTED_ORIGINS = []


def policy(settings: Any, **roles: list[str]) -> None:
    settings.VIGIE_SIGNIN_METHODS = {**settings.VIGIE_SIGNIN_METHODS, **roles}


@pytest.mark.django_db
def test_attack_a_passkey_alone_is_refused_where_the_role_may_not_use_it(
    doctor: User, settings: Any
) -> None:
    key = registered(doctor)
    policy(settings, doctor=["password_passkey", "password_totp"])
    client = browser()
    response = sign_in_alone(client, key)
    assert response.status_code == 403
    assert last(tags.SIGNIN_METHOD_REFUSED).extra["method"] == "passkey"
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_attack_a_code_is_refused_where_the_role_requires_a_passkey(
    admin_user: User, settings: Any
) -> None:
    # The account has both; the policy allows only passkeys: a TOTP session (posted to
    # /accounts/verify/ directly) goes no further than the login page.
    registered(admin_user)
    policy(settings, admin=["passkey", "password_passkey"])
    client = browser()
    client.post("/accounts/login/", {"username": admin_user.username, "password": PASSWORD})
    response = client.post("/accounts/verify/", {"code": fresh_code(totp_device(admin_user))})
    assert response.status_code == 302
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    refused = last(tags.SIGNIN_METHOD_REFUSED)
    assert refused.extra == {"method": "password_totp", "role": "admin"}
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_an_administrator_required_to_use_a_passkey_is_led_to_register_one(
    admin_user: User, settings: Any
) -> None:
    # The policy tightened after the account was made: one more sign-in with the code, which
    # opens nothing but the registration of a passkey; then the passkey is the way in.
    policy(settings, admin=["passkey", "password_passkey"])
    client = browser()
    log_in(client, admin_user)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/passkeys/enrol/"
    assert client.get("/admin/").status_code == 302
    assert client.get("/accounts/passkeys/enrol/").status_code == 200
    key = SoftAuthenticator(ORIGIN)
    assert register(client, key).status_code == 200
    assert client.session[signin_policy.SESSION_METHOD] == signin_policy.PASSKEY
    assert client.get("/").status_code == 200
    # From now on the code alone is refused, the passkey accepted.
    assert sign_in_alone(browser(), key).status_code == 200


@pytest.mark.django_db
def test_a_new_account_that_must_use_passkeys_registers_one_after_its_password(
    settings: Any,
) -> None:
    newcomer = make_user("dpo.new", role=Role.AUDITOR, enrolled=False)
    policy(settings, auditor=["password_passkey"])
    client = browser()
    response = client.post(
        "/accounts/login/", {"username": newcomer.username, "password": PASSWORD}
    )
    assert response["Location"] == "/accounts/passkeys/enrol/"
    # The code enrolment is not offered to a role that may not use codes.
    assert client.get("/accounts/enrol/")["Location"] == "/accounts/passkeys/enrol/"
    assert register(client, SoftAuthenticator(ORIGIN)).status_code == 200
    assert client.session[signin_policy.SESSION_METHOD] == signin_policy.PASSWORD_PASSKEY
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_attack_a_password_never_adds_a_factor_beside_an_existing_passkey(doctor: User) -> None:
    # Password known, passkey not held: the code enrolment must not become a way around it.
    key = registered(doctor)
    TOTPDevice.objects.filter(user=doctor).delete()
    client = browser()
    client.post("/accounts/login/", {"username": doctor.username, "password": PASSWORD})
    assert client.get("/accounts/enrol/")["Location"] == "/accounts/passkeys/verify/"
    assert post_json(client, "/accounts/passkeys/register/options/").status_code == 403
    assert Passkey.objects.filter(user=doctor).count() == 1
    assert key.sign_count == 0


@pytest.mark.django_db
def test_a_password_leads_nowhere_for_a_role_that_signs_in_without_one(
    doctor: User, settings: Any
) -> None:
    registered(doctor)
    policy(settings, doctor=["psc", "passkey"])
    client = browser()
    response = client.post("/accounts/login/", {"username": doctor.username, "password": PASSWORD})
    assert response["Location"] == "/accounts/login/?method=passkey"
    assert "_auth_user_id" not in client.session
    page = client.get(response["Location"]).content.decode()
    assert 'id="passkey-required"' in page
    assert last(tags.SIGNIN_METHOD_REFUSED).actor_username == doctor.username


@pytest.mark.django_db
def test_a_session_whose_method_is_unknown_is_refused(doctor: User) -> None:
    client = browser()
    log_in(client, doctor)
    session = client.session
    session[signin_policy.SESSION_METHOD] = "carrier_pigeon"
    session.save()
    assert client.get("/")["Location"] == "/accounts/login/"
    assert last(tags.SIGNIN_METHOD_REFUSED).extra["method"] == "carrier_pigeon"


@pytest.mark.django_db
@pytest.mark.parametrize("recorded", [True, False])
def test_a_pro_sante_connect_session_is_judged_as_psc(
    doctor: User, settings: Any, recorded: bool
) -> None:
    from django_otp import DEVICE_ID_SESSION_KEY

    from vigie.accounts.psc.signin import device_for

    registered(doctor)
    client = browser()
    log_in(client, doctor)
    # The session as psc.signin.sign_in leaves it: PSC's device, the method recorded (or,
    # for a session opened before methods were recorded, only the device).
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device_for(doctor).persistent_id
    session.pop(signin_policy.SESSION_METHOD, None)
    if recorded:
        session[signin_policy.SESSION_METHOD] = signin_policy.PSC
    session.save()
    assert client.get("/").status_code == 200
    policy(settings, doctor=["passkey", "password_passkey"])
    assert client.get("/")["Location"] == "/accounts/login/"
    assert last(tags.SIGNIN_METHOD_REFUSED).extra == {"method": "psc", "role": "doctor"}
