"""Helpers for tests across apps: personas with a second factor, codes, verified sessions.

    from vigie.accounts.testing import make_user, log_in
    doctor = make_user("dr.house", role=Role.DOCTOR)
    log_in(client, doctor)          # a fully verified session, as after the real login

`log_in` skips the login pages (fast) but produces exactly the session state they produce;
the accounts tests exercise the pages themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP

from vigie.accounts.models import Role, SealedTOTPDevice, User
from vigie.accounts.otp import SECOND_FACTOR_AT, TOTP_DEVICE_NAME
from vigie.accounts.sessions import AUTH_AT, LAST_SEEN
from vigie.audit.models import AuditEvent

PASSWORD = "correct horse battery staple 42"  # noqa: S105 -- test-only persona password


def make_user(
    username: str, *, role: Role = Role.DOCTOR, enrolled: bool = True, **fields: Any
) -> User:
    """A user with PASSWORD and, if `enrolled`, a confirmed TOTP device."""
    if role == Role.ADMIN:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
    user = User(username=username, role=role, **fields)
    user.set_password(PASSWORD)
    user.save()
    if enrolled:
        SealedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    return user


def totp_device(user: User) -> SealedTOTPDevice:
    device: SealedTOTPDevice = SealedTOTPDevice.objects.get(user=user, confirmed=True)
    return device


def code_at_step(device: SealedTOTPDevice, step: int) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, 0)
    totp.time = device.t0 + step * device.step
    return f"{totp.token():0{device.digits}d}"


def current_step(device: SealedTOTPDevice) -> int:
    return int((time.time() - device.t0) // device.step)


def fresh_code(device: SealedTOTPDevice) -> str:
    """A code the device accepts now and has not accepted before (replay protection)."""
    device.refresh_from_db()
    now = current_step(device)
    centre = now + device.drift
    usable = [
        step
        for step in range(centre - device.tolerance, centre + device.tolerance + 1)
        if step > device.last_t
    ]
    if not usable:
        raise AssertionError("no unused code in the tolerance window; advance the clock")
    # Prefer the earliest step not in the past: it stays valid if a 30 s boundary passes
    # before the code is checked (a past step's code could then be too old).
    current_or_later = [step for step in usable if step >= now]
    return code_at_step(device, min(current_or_later) if current_or_later else max(usable))


def current_codes(device: SealedTOTPDevice) -> set[str]:
    """Every code the device could accept around now (for "never displayed" checks)."""
    now = current_step(device)
    return {code_at_step(device, s) for s in range(now - 2, now + 3)}


def log_in(client: Client, user: User) -> None:
    """Give `client` a fully logged-in, second-factor-verified, freshly re-authenticated
    session for `user`."""
    device = SealedTOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = SealedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    stamp = time.time()
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[AUTH_AT] = stamp
    session[LAST_SEEN] = stamp
    session[SECOND_FACTOR_AT] = stamp
    session.save()


def log_in_password_only(client: Client, user: User) -> None:
    """The half-logged-in state: password accepted, second factor not yet given."""
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code


# --- passkeys: a software authenticator and the ceremonies through the test client ---
# A software WebAuthn authenticator for the server-side tests: real P-256 keys, real CBOR,
# real signatures, so py_webauthn checks exactly what it checks for a browser's answer.
#
# It does what an authenticator and a browser do together: builds clientDataJSON for the
# origin it is told it runs on, the authenticator data (RP ID hash, flags, counter), and signs.
# The browser tests drive Chromium's own virtual authenticator instead.

UP, UV, AT = 0x01, 0x04, 0x40


def b64(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    def __init__(self, origin: str = "http://localhost", *, user_verified: bool = True) -> None:
        self.origin = origin
        self.user_verified = user_verified
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(20)
        self.sign_count = 0
        self.user_handle: bytes | None = None
        self.rp_id = ""

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _flags(self, extra: int = 0) -> int:
        return UP | (UV if self.user_verified else 0) | extra

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps({**data, "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """The answer to navigator.credentials.create() with these (JSON) options."""
        self.rp_id = options["rp"]["id"]
        self.user_handle = unb64(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags(AT)])
            + self.sign_count.to_bytes(4, "big")
            + bytes(16)  # AAGUID: none
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self._cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "attestationObject": b64(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        count: int | None = None,
        rp_id: str | None = None,
    ) -> dict[str, Any]:
        """The answer to navigator.credentials.get(); the counter moves on unless `count`."""
        self.sign_count = self.sign_count + 1 if count is None else count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
            + bytes([self._flags()])
            + self.sign_count.to_bytes(4, "big")
        )
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(self.user_handle or b""),
            },
            "clientExtensionResults": {},
        }


ORIGIN = "http://localhost"


def browser() -> Client:
    return Client(HTTP_HOST="localhost")


def post_json(client: Client, url: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(url, json.dumps(data or {}), content_type="application/json")


def register(client: Client, key: SoftAuthenticator, name: str = "office PC") -> Any:
    options = post_json(client, "/accounts/passkeys/register/options/").json()
    return post_json(
        client, "/accounts/passkeys/register/", {"credential": key.create(options), "name": name}
    )


def registered(user: User) -> SoftAuthenticator:
    """A passkey registered through the real ceremony by a signed-in `user`."""
    client = browser()
    log_in(client, user)
    key = SoftAuthenticator(ORIGIN)
    response = register(client, key)
    assert response.status_code == 200, response.content
    return key


def sign_in_alone(client: Client, key: SoftAuthenticator, **answer: Any) -> Any:
    options = post_json(client, "/accounts/passkeys/login/options/").json()
    return post_json(
        client, "/accounts/passkeys/login/", {"credential": key.get(options, **answer)}
    )


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-seq").first()  # type: ignore[return-value]
