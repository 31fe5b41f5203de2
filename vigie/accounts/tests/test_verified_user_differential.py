"""`VerifiedUserMiddleware` against the two libraries it stands for.

Django's AuthenticationMiddleware then django-otp's OTPMiddleware decide who a request is
and whether their second factor stands; Vigie's middleware reads the user and the device in
one statement and applies their rules itself. Every case below (no session, half and fully
signed-in sessions, every kind of device id, a device of another account or unconfirmed or
deleted, an inactive or deleted account, a changed password, a rotated secret, a foreign
backend, a malformed user id) goes through both on identical sessions, and must leave the
same user, device, verification, and session behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.middleware import OTPMiddleware
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts.middleware import VerifiedUserMiddleware
from vigie.accounts.models import PscDevice, Role, User

pytestmark = pytest.mark.django_db

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
OLD_SECRET = "an-old-secret-key-that-was-rotated-out-0123456789-abcdefghijklmnop"


def _respond(request: HttpRequest) -> HttpResponse:
    return HttpResponse()


def through_the_libraries(request: HttpRequest) -> Any:
    return OTPMiddleware(_respond)._verify_user_sync(request, auth.get_user(request))


def through_vigie(request: HttpRequest) -> Any:
    middleware = VerifiedUserMiddleware(_respond)
    middleware.process_request(request)
    _ = request.user.is_authenticated  # the lazy object loads here
    return request.user._wrapped  # type: ignore[union-attr]


_numbers = itertools.count()


def _doctor(name: str) -> User:
    unique = f"{name}{next(_numbers)}"
    return User.objects.create_user(username=unique, role=Role.DOCTOR, password="pw-" + unique)


def _session(values: dict[str, Any]) -> str:
    store = SessionStore()
    for key, value in values.items():
        store[key] = value
    store.save()
    assert store.session_key is not None
    return store.session_key


def _signed_in(user: User, device_id: str | None = None, **override: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: MODEL_BACKEND,
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        "vigie_auth_at": 1.0,
    }
    if device_id is not None:
        values[DEVICE_ID_SESSION_KEY] = device_id
    values.update(override)
    return {k: v for k, v in values.items() if v is not None}


def _scenarios() -> dict[str, Callable[[], dict[str, Any]]]:
    """Each builds its rows afresh (a flush by one stack must not spoil the other's run)."""

    def totp(user: User, *, confirmed: bool = True) -> TOTPDevice:
        return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=confirmed)

    def static(user: User) -> StaticDevice:
        return StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)

    def scenario_totp() -> dict[str, Any]:
        user = _doctor("dr.totp")
        return _signed_in(user, totp(user).persistent_id)

    def scenario_sealed_proxy_id() -> dict[str, Any]:
        user = _doctor("dr.sealed")
        return _signed_in(user, f"accounts.sealedtotpdevice/{totp(user).pk}")

    def scenario_static() -> dict[str, Any]:
        user = _doctor("dr.static")
        return _signed_in(user, static(user).persistent_id)

    def scenario_psc() -> dict[str, Any]:
        user = _doctor("dr.psc")
        return _signed_in(user, PscDevice.objects.create(user=user, confirmed=True).persistent_id)

    def scenario_someone_elses_psc() -> dict[str, Any]:
        user, other = _doctor("dr.me.psc"), _doctor("dr.other.psc")
        return _signed_in(user, PscDevice.objects.create(user=other, confirmed=True).persistent_id)

    def scenario_unconfirmed() -> dict[str, Any]:
        user = _doctor("dr.unconfirmed")
        return _signed_in(user, totp(user, confirmed=False).persistent_id)

    def scenario_someone_elses_device() -> dict[str, Any]:
        user, other = _doctor("dr.me"), _doctor("dr.other")
        return _signed_in(user, totp(other).persistent_id)

    def scenario_deleted_device() -> dict[str, Any]:
        user = _doctor("dr.deleted.device")
        device = totp(user)
        pid = device.persistent_id
        device.delete()
        return _signed_in(user, pid)

    def scenario_inactive() -> dict[str, Any]:
        user = _doctor("dr.inactive")
        values = _signed_in(user, totp(user).persistent_id)
        User.objects.filter(pk=user.pk).update(is_active=False)
        return values

    def scenario_deleted_user() -> dict[str, Any]:
        user = _doctor("dr.gone")
        values = _signed_in(user)
        User.objects.filter(pk=user.pk).delete()
        return values

    def scenario_password_changed() -> dict[str, Any]:
        user = _doctor("dr.changed")
        values = _signed_in(user, totp(user).persistent_id)
        user.set_password("a-new-password-entirely")
        user.save()
        return values

    def scenario_rotated_secret() -> dict[str, Any]:
        user = _doctor("dr.rotated")
        with override_settings(SECRET_KEY=OLD_SECRET):
            old_hash = user.get_session_auth_hash()
        return _signed_in(user, totp(user).persistent_id, **{HASH_SESSION_KEY: old_hash})

    def with_device_id(device_id: str) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            return _signed_in(_doctor("dr.odd.id"), device_id)

        return build

    def without(key: str) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            user = _doctor("dr.without")
            values = _signed_in(user, totp(user).persistent_id)
            del values[key]
            return values

        return build

    def with_value(key: str, value: str) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            user = _doctor("dr.value")
            return _signed_in(user, totp(user).persistent_id, **{key: value})

        return build

    return {
        "no session": dict,
        "password only": lambda: _signed_in(_doctor("dr.half")),
        "totp": scenario_totp,
        "sealed proxy id": scenario_sealed_proxy_id,
        "recovery codes": scenario_static,
        "pro santé connect": scenario_psc,
        "another account's pro santé connect": scenario_someone_elses_psc,
        "unconfirmed device": scenario_unconfirmed,
        "another account's device": scenario_someone_elses_device,
        "deleted device": scenario_deleted_device,
        "inactive account": scenario_inactive,
        "deleted account": scenario_deleted_user,
        "password changed": scenario_password_changed,
        "rotated secret": scenario_rotated_secret,
        "no hash": without(HASH_SESSION_KEY),
        "no backend": without(BACKEND_SESSION_KEY),
        "no user id": without(SESSION_KEY),
        "foreign backend": with_value(BACKEND_SESSION_KEY, "some.other.Backend"),
        "wrong hash": with_value(HASH_SESSION_KEY, "0" * 64),
        "junk device id": with_device_id("junk"),
        "legacy device id": with_device_id("django_otp.plugins.otp_totp.models.TOTPDevice/1"),
        "unknown model": with_device_id("nope.nothing/1"),
        "not a device": with_device_id("accounts.user/1"),
        "non-numeric pk": with_device_id("otp_totp.totpdevice/one"),
        "missing device": with_device_id("otp_totp.totpdevice/999999"),
        "malformed user id": with_value(SESSION_KEY, "not-a-number"),
    }


def _outcome(stack: Callable[[HttpRequest], Any], values: dict[str, Any]) -> dict[str, Any]:
    key = _session(values)
    request = RequestFactory().get("/documents/x/content")
    request.session = SessionStore(key)
    try:
        user = stack(request)
    except Exception as exc:  # both stacks must fail alike, if at all
        return {"raised": type(exc)}
    device = getattr(user, "otp_device", None)
    session = request.session
    return {
        "user": (type(user).__name__, user.pk, user.get_username()),
        "authenticated": user.is_authenticated,
        "verified": user.is_verified(),
        "device": (type(device).__name__, device.pk) if device is not None else None,
        "session": dict(session.items()),
        "session kept its key": session.session_key == key,
        "session modified": session.modified,
    }


def test_vigies_middleware_answers_as_the_two_libraries_do(settings: Any) -> None:
    settings.SECRET_KEY_FALLBACKS = [OLD_SECRET]
    for name, build in _scenarios().items():
        # The same rows for both: built once, the session copied for each stack.
        values = build()
        expected = _outcome(through_the_libraries, values)
        got = _outcome(through_vigie, values)
        assert got == expected, name
        # Each case is what its name says: the matrix holds verified and refused sessions.
    assert _outcome(through_vigie, _scenarios()["totp"]())["verified"] is True
    assert _outcome(through_vigie, _scenarios()["another account's device"]())["verified"] is False
