"""API keys for systems: create (shown once), authenticate, revoke.

A key reads `vk_<prefix>_<secret>`: the prefix finds the row, the secret is compared with
its stored SHA-256 in constant time. Keys are for ingest only: the views that accept them
write documents and never read one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from vigie.audit import refusals
from vigie.audit.log import record
from vigie.intake.models import ApiKey
from vigie.lib import rawsql

KEY_PREFIX = "vk_"
REFUSED = "intake.apikey.refused"
_PREFIX_BYTES = 6
_SECRET_BYTES = 32
# Refresh last_used_at at most this often: a busy lab must not turn every request into a
# row update.
_LAST_USED_RESOLUTION_SECONDS = 60


class ApiKeyError(ValueError):
    pass


@dataclass(frozen=True)
class Refusal:
    """Why a request's key was refused (the message is safe to send back)."""

    reason: str
    message: str
    # "throttled" only: seconds before the source is heard again (Retry-After).
    retry_after: int | None = None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _networks(values: list[str]) -> list[str]:
    cleaned = []
    for value in values:
        try:
            cleaned.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise ApiKeyError(f"not an address or network: {value!r}") from None
    return cleaned


def create_key(
    name: str, *, source_system: str, networks: list[str] | None = None, by: str = ""
) -> tuple[ApiKey, str]:
    """A new key and its full text, which is shown once and never stored."""
    if not name.strip():
        raise ApiKeyError("give the key a name (the system it is for)")
    if not source_system.strip():
        raise ApiKeyError("give the source system the key's documents come from")
    if ApiKey.objects.filter(name=name.strip()).exists():
        raise ApiKeyError(f"a key named {name.strip()!r} already exists")
    prefix = secrets.token_hex(_PREFIX_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name.strip(),
            prefix=prefix,
            secret_hash=_hash(secret),
            source_system=source_system.strip(),
            allowed_networks=_networks(networks or []),
            created_by=by,
        )
        record(
            "intake.apikey.created",
            extra={
                "key": key.name,
                "prefix": prefix,
                "networks": key.allowed_networks,
                "by": by,
            },
        )
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def revoke(key: ApiKey, *, by: str = "") -> None:
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None:
            return
        locked.revoked_at = timezone.now()
        locked.revoked_by = by
        locked.save(update_fields=["revoked_at", "revoked_by"])
        record("intake.apikey.revoked", extra={"key": locked.name, "by": by})
    key.refresh_from_db()


def presented_key(request: HttpRequest) -> str | None:
    """The key a request carries: `Authorization: Bearer vk_…` or `X-API-Key: vk_…`."""
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    value = str(request.META.get("HTTP_X_API_KEY", "")).strip()
    return value or None


def authenticate(request: HttpRequest) -> ApiKey | Refusal:
    """The active key this request presents from an allowed address, or why not.

    Refusals are audited here (`intake.apikey.refused`): those of an unknown or absent key
    counted per source and minute (`audit.refusals`), those of a known key one by one; a
    successful use is audited by the channel, in the same transaction as what it stores.

    The throttle is for callers without a valid key: a source refused too often this minute
    is throttled before its secret is hashed. A valid, active key used from an allowed
    address is not throttled as anonymous (its holder is accountable, every use audited by
    name): so it is checked first, and a lab's every document does not pay for a sum of the
    refusal counters, nor is it locked out by a flood from an address it shares (NAT).
    """
    text = presented_key(request)
    well_formed = text is not None and _well_formed(text)
    prefix, secret = _split(text) if text is not None and well_formed else ("", "")
    # Looked up by prefix before the throttle, hashed only if the prefix names a key: a
    # flood of guessed keys (unknown prefixes) still hashes nothing once throttled.
    # Raw: the ORM's query cost more CPU than the database's answer, on every request.
    key: ApiKey | None = (
        rawsql.first_by(ApiKey, "prefix", prefix, connection) if well_formed else None
    )
    secret_matches = key is not None and hmac.compare_digest(key.secret_hash, _hash(secret))
    if (
        key is not None
        and secret_matches
        and key.revoked_at is None
        and (not key.allowed_networks or _address_allowed(request, key.allowed_networks))
    ):
        _note_use(key)
        return key
    wait = refusals.throttled(request, REFUSED)
    if wait is not None:
        return Refusal(
            refusals.THROTTLED,
            "too many refused requests from this address: retry after Retry-After seconds",
            retry_after=wait,
        )
    if text is None:
        return _refuse(request, "missing", "send the API key in an Authorization: Bearer header")
    if not well_formed:
        return _refuse(request, "malformed", "the API key is not in the form vk_<prefix>_<secret>")
    if key is None:
        # Hash even when there is no such key, so timing does not tell prefixes apart.
        hmac.compare_digest(_hash(""), _hash(secret))
        return _refuse(request, "unknown", "this API key is not valid")
    if not secret_matches:
        return _refuse(request, "unknown", "this API key is not valid")
    if key.revoked_at is not None:
        return _refuse(request, "revoked", "this API key was revoked", key)
    return _refuse(request, "network", "this API key is not allowed from this address", key)


def _well_formed(text: str) -> bool:
    # Keys we issue are hex and URL-safe base64: anything else (a header decoded as latin-1
    # carrying UTF-8, control characters) is malformed, refused and audited like any bad key
    # rather than reaching the hash and failing there with a 500 that leaves no trace.
    return (
        text.isascii()
        and text.isprintable()
        and text.startswith(KEY_PREFIX)
        and text.count("_") >= 2
    )


def _split(text: str) -> tuple[str, str]:
    prefix, _, secret = text[len(KEY_PREFIX) :].partition("_")
    return prefix, secret


def _note_use(key: ApiKey) -> None:
    now = timezone.now()
    if (
        key.last_used_at is None
        or (now - key.last_used_at).total_seconds() > _LAST_USED_RESOLUTION_SECONDS
    ):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


def _address_allowed(request: HttpRequest, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def _refuse(request: HttpRequest, reason: str, message: str, key: ApiKey | None = None) -> Refusal:
    # A known key (revoked, or used from the wrong network) is audited every time: only its
    # holder can cause this, and each event names the key. Anyone can cause the others, as
    # often as they like: those are counted, one event per source, minute and reason.
    refusals.refused(
        request,
        REFUSED,
        reason,
        extra={"key": key.name if key else "", "path": request.path[:200]},
        individually=key is not None,
    )
    return Refusal(reason, message)
