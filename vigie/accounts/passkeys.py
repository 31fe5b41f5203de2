"""Passkeys (WebAuthn): registration, sign-in alone or after the password, re-authentication.

The checks themselves (client data, RP ID hash, flags, attestation, signature) are
py_webauthn's; this module decides what is expected and what happens around them:

- the RP ID and the accepted origins come from the settings that already name the site
  (`rp_id()`, `expected_origins()`): a ceremony run on any other origin is refused, even one
  under the RP ID's domain that the browser would allow;
- every challenge is a `PasskeyChallenge` row bound to the session (a hash of its key) and to
  its purpose, deleted by the one statement that uses it: single use, even under concurrency;
- every attempt is counted by the lockout before anything is checked, like a password or a
  code (per source address, and per account once the account is known);
- the sign counter must grow: a valid signature with a counter that did not is a cloned
  authenticator, so the passkey is revoked, IT alerted and the sign-in refused;
- every registration, use, refusal and revocation is an audit event (audit/tags.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.parse_authentication_credential_json import (
    parse_authentication_credential_json,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from vigie.accounts import events, lockout
from vigie.accounts.models import Passkey, PasskeyChallenge, User
from vigie.audit import tags

if TYPE_CHECKING:
    from webauthn.helpers.structs import AuthenticationCredential

Purpose = PasskeyChallenge.Purpose
CHALLENGE_LIFETIME = timedelta(minutes=5)
TIMEOUT_MS = 120_000
NAME_MAX = 64  # django-otp's Device.name
CLONE_ALERT = "system.passkey.clone_suspected"
_USER_HANDLE_SALT = "vigie.accounts.passkey-user-handle"


class PasskeyError(Exception):
    """Refused (already audited); `reason` is the audit reason, never shown as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PasskeyLocked(PasskeyError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("locked")
        self.retry_after = retry_after


# --- where the ceremony may take place ---


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _trusted_origins() -> list[str]:
    return [o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS if "*" not in o]


def rp_id() -> str | None:
    """The site's name passkeys are bound to: the first trusted origin's host, else the
    first allowed host that is a name (browsers refuse IP addresses); None if there is none."""
    for origin in _trusted_origins():
        host = urlsplit(origin).hostname
        if host and not _is_ip(host):
            return host
    for entry in settings.ALLOWED_HOSTS:
        host = entry.lstrip(".").rsplit(":", 1)[0] if not entry.startswith("[") else entry
        if host and "*" not in host and not _is_ip(host):
            return host.lower()
    return None


def expected_origins(request: HttpRequest) -> list[str]:
    """The trusted origins when configured (production); otherwise the request's own origin,
    and only when its host is the RP ID itself (demo: http://localhost:8000)."""
    configured = _trusted_origins()
    if configured:
        return configured
    own = f"{request.scheme}://{request.get_host()}"
    return [own] if urlsplit(own).hostname == rp_id() else []


def available() -> bool:
    return rp_id() is not None


# --- challenges: single use, bound to the session and the purpose ---


def _session_hash(request: HttpRequest) -> str:
    if request.session.session_key is None:
        request.session.save()
    key = request.session.session_key or ""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _issue(request: HttpRequest, purpose: str, user: User | None) -> bytes:
    session = _session_hash(request)
    cutoff = timezone.now() - CHALLENGE_LIFETIME
    # One live challenge per session and purpose; stale ones of anybody go too.
    PasskeyChallenge.objects.filter(session_hash=session, purpose=purpose).delete()
    PasskeyChallenge.objects.filter(created_at__lt=cutoff).delete()
    row = PasskeyChallenge.objects.create(
        challenge=secrets.token_bytes(32),
        purpose=purpose,
        session_hash=session,
        user=user,
    )
    return bytes(row.challenge)


def _consume(request: HttpRequest, purpose: str, user: User | None) -> bytes | None:
    """The challenge this session was given for `purpose` (and `user`), deleted; or None."""
    if request.session.session_key is None:
        return None
    rows = PasskeyChallenge.objects.filter(
        session_hash=_session_hash(request),
        purpose=purpose,
        user=user,
        created_at__gte=timezone.now() - CHALLENGE_LIFETIME,
    )
    row = rows.first()
    if row is None:
        return None
    # The conditional delete is the claim: of two requests racing, only one deletes it.
    deleted, _ = PasskeyChallenge.objects.filter(pk=row.pk).delete()
    return bytes(row.challenge) if deleted else None


# --- registration ---


def user_handle(user: User) -> bytes:
    """The WebAuthn user.id: opaque, stable per account, never the identifier."""
    existing = Passkey.objects.filter(user=user).values_list("user_handle", flat=True).first()
    if existing:
        return bytes(existing)
    return salted_hmac(_USER_HANDLE_SALT, str(user.pk), algorithm="sha256").digest()


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    from webauthn import base64url_to_bytes

    found = []
    for passkey in Passkey.objects.filter(user=user, confirmed=True):
        transports = []
        for name in passkey.transports:
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue  # a transport newer than the library: the browser finds it anyway
        found.append(
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(passkey.credential_id), transports=transports or None
            )
        )
    return found


def registration_options(request: HttpRequest, user: User) -> str:
    site = rp_id()
    if site is None:
        raise PasskeyError("no_rp_id")
    options = generate_registration_options(
        rp_id=site,
        rp_name=settings.OTP_TOTP_ISSUER,
        user_name=user.get_username(),
        user_display_name=user.get_full_name() or user.get_username(),
        user_id=user_handle(user),
        challenge=_issue(request, Purpose.REGISTER, user),
        timeout=TIMEOUT_MS,
        # Discoverable, so it can sign in alone; verified (PIN, biometrics) since it may.
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(user),
    )
    return str(options_to_json(options))


def _refuse(
    request: HttpRequest,
    action: str,
    reason: str,
    *,
    actor: User | None = None,
    extra: dict[str, Any] | None = None,
) -> PasskeyError:
    events.audit(action, request=request, actor=actor, outcome="denied", reason=reason, extra=extra)
    return PasskeyError(reason)


def _reserve(request: HttpRequest, user: User | None) -> lockout.Reservation:
    counters: list[tuple[str, str]] = []
    address = lockout.client_ip(request)
    if address:
        counters.append((lockout.Scope.ADDRESS, address))
    if user is not None:
        counters.append((lockout.Scope.SECOND_FACTOR, user.get_username()))
    try:
        return lockout.reserve(counters)
    except lockout.Refused as refusal:
        events.audit(
            events.LOGIN_LOCKED,
            request=request,
            actor=user,
            outcome="denied",
            reason="too_many_failures",
            extra={"step": "passkey"},
        )
        raise PasskeyLocked(refusal.retry_after) from None


def clean_name(name: str, user: User) -> str:
    name = " ".join((name or "").split())[:NAME_MAX]
    if name:
        return name
    count = Passkey.objects.filter(user=user).count() + 1
    return f"Passkey {count}"


def register(request: HttpRequest, user: User, credential: Any, name: str) -> Passkey:
    """Verify the browser's answer to registration_options() and store the new passkey."""
    reservation = _reserve(request, user)
    challenge = _consume(request, Purpose.REGISTER, user)
    action = tags.PASSKEY_REGISTRATION_REFUSED
    if challenge is None:
        raise _refuse(request, action, "no_challenge", actor=user)
    origins = expected_origins(request)
    site = rp_id() or ""
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=site,
            expected_origin=origins,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise _refuse(request, action, _reason(exc, origins), actor=user) from None
    transports = []
    if isinstance(credential, dict):
        found = credential.get("response", {}).get("transports", [])
        transports = [str(t)[:16] for t in found[:8]] if isinstance(found, list) else []
    passkey = Passkey(
        user=user,
        name=clean_name(name, user),
        confirmed=True,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        user_handle=user_handle(user),
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=str(verified.aaguid)[:36],
        backed_up=bool(verified.credential_backed_up),
    )
    try:
        with transaction.atomic():
            passkey.save()
    except IntegrityError:
        raise _refuse(request, action, "already_registered", actor=user) from None
    reservation.succeeded()
    events.audit(
        tags.PASSKEY_REGISTERED,
        request=request,
        actor=user,
        extra={"passkey": passkey.name, "passkey_id": passkey.pk, "aaguid": passkey.aaguid},
    )
    return passkey


def _reason(exc: Exception, origins: list[str]) -> str:
    # For the audit trail only: which check failed, in a word.
    text = str(exc).lower()
    for needle, reason in (
        ("signature", "bad_signature"),
        ("origin", "wrong_origin"),
        ("rp id", "wrong_rp_id"),
        ("challenge", "wrong_challenge"),
        ("user was not verified", "user_not_verified"),
    ):
        if needle in text:
            return reason
    return "invalid_response" if origins else "no_expected_origin"


# --- authentication ---


def authentication_options(request: HttpRequest, purpose: str, user: User | None = None) -> str:
    site = rp_id()
    if site is None:
        raise PasskeyError("no_rp_id")
    options = generate_authentication_options(
        rp_id=site,
        challenge=_issue(request, purpose, user),
        timeout=TIMEOUT_MS,
        # Alone: the browser lists the discoverable passkeys; after the password: this
        # account's only.
        allow_credentials=_descriptors(user) if user is not None else [],
        user_verification=UserVerificationRequirement.REQUIRED
        if purpose == Purpose.LOGIN
        else UserVerificationRequirement.PREFERRED,
    )
    return str(options_to_json(options))


@dataclass
class _Parsed:
    credential: AuthenticationCredential
    origin: str


def _parse(request: HttpRequest, credential: Any, actor: User | None) -> _Parsed:
    try:
        parsed = parse_authentication_credential_json(credential)
        client = parse_client_data_json(bytes(parsed.response.client_data_json))
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError):
        raise _refuse(request, tags.PASSKEY_REFUSED, "malformed", actor=actor) from None
    return _Parsed(parsed, str(client.origin))


def authenticate(
    request: HttpRequest, purpose: str, credential: Any, user: User | None = None
) -> Passkey:
    """The passkey that signed this session's challenge for `purpose` (its counter moved
    on), or PasskeyError. `user`: the account that must own it (after the password, at
    re-authentication); None for a sign-in with the passkey alone (user verification then
    required)."""
    parsed = _parse(request, credential, user)
    passkey: Passkey | None = (
        Passkey.objects.select_related("user").filter(credential_id=parsed.credential.id).first()
    )
    owner = passkey.user if passkey is not None else user
    reservation = _reserve(request, owner)
    challenge = _consume(request, purpose, user)
    detail: dict[str, Any] = {"purpose": purpose}
    if passkey is not None:
        detail.update(passkey=passkey.name, passkey_id=passkey.pk)

    def refused(reason: str) -> PasskeyError:
        return _refuse(request, tags.PASSKEY_REFUSED, reason, actor=owner, extra=detail)

    if challenge is None:
        raise refused("no_challenge")
    if passkey is None:
        raise refused("unknown_passkey")
    if user is not None and passkey.user_id != user.pk:
        raise refused("other_account")
    if not passkey.confirmed or passkey.revoked_at is not None:
        raise refused("revoked")
    if not passkey.user.is_active:
        raise refused("inactive_account")
    handle = parsed.credential.response.user_handle
    if handle is not None and bytes(handle) != bytes(passkey.user_handle):
        raise refused("other_account")
    origins = expected_origins(request)
    if parsed.origin not in origins:
        detail["origin"] = parsed.origin[:200]
        raise refused("wrong_origin")
    try:
        verified = verify_authentication_response(
            credential=parsed.credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id() or "",
            expected_origin=origins,
            credential_public_key=bytes(passkey.public_key),
            # The counter is judged below, after the signature: only a *valid* assertion
            # with a stale counter says that the key exists twice.
            credential_current_sign_count=0,
            require_user_verification=purpose == Purpose.LOGIN,
        )
    except (WebAuthnException, ValueError, TypeError) as exc:
        raise refused(_reason(exc, origins)) from None
    _advance_counter(request, passkey, verified.new_sign_count, detail)
    reservation.succeeded()
    events.audit(tags.PASSKEY_USED, request=request, actor=passkey.user, extra=detail)
    return passkey


def _advance_counter(
    request: HttpRequest, passkey: Passkey, new: int, detail: dict[str, Any]
) -> None:
    now = timezone.now()
    with transaction.atomic():
        locked = Passkey.objects.select_for_update().get(pk=passkey.pk)
        old = locked.sign_count
        # Authenticators that keep no counter send 0 every time: nothing to compare then.
        cloned = (new > 0 or old > 0) and new <= old
        if cloned:
            locked.confirmed = False
            locked.revoked_at = now
            locked.revoked_reason = "clone_suspected"
            locked.save(update_fields=["confirmed", "revoked_at", "revoked_reason"])
        else:
            locked.sign_count = new
            locked.used_at = now
            locked.save(update_fields=["sign_count", "used_at"])
    if not cloned:
        passkey.sign_count = new
        return
    from vigie.alerts.services import raise_alert

    detail.update(stored_count=old, presented_count=new)
    username = passkey.user.get_username()
    raise_alert(
        CLONE_ALERT,
        severity="critical",
        summary=f"A cloned passkey of {username} was presented: it is revoked",
        details={"username": username, "address": lockout.client_ip(request), **detail},
        dedupe_key=f"{CLONE_ALERT}:{passkey.pk}",
    )
    raise _refuse(
        request,
        tags.PASSKEY_CLONE_SUSPECTED,
        "counter_not_increasing",
        actor=passkey.user,
        extra=detail,
    )


# --- management ---


def active_passkeys(user: User) -> list[Passkey]:
    return list(Passkey.objects.filter(user=user, confirmed=True).order_by("registered_at"))


def revoke(request: HttpRequest, user: User, passkey_id: int, reason: str = "revoked") -> bool:
    """Revoke one of `user`'s own passkeys; False when there is no such active passkey."""
    updated = Passkey.objects.filter(pk=passkey_id, user=user, confirmed=True).update(
        confirmed=False, revoked_at=timezone.now(), revoked_reason=reason
    )
    if updated:
        events.audit(
            tags.PASSKEY_REVOKED, request=request, actor=user, extra={"passkey_id": passkey_id}
        )
    return bool(updated)


def revoke_all(user: User, reason: str) -> int:
    """Every passkey of `user` (credentials reset); the caller audits the reset."""
    updated: int = Passkey.objects.filter(user=user, confirmed=True).update(
        confirmed=False, revoked_at=timezone.now(), revoked_reason=reason
    )
    return updated
