"""Signed probe requests: the guard's own outside-in probe fetches decoy URLs on purpose.

The guard signs each request it hands to the vantage point, and the canary tripwire
recognises a valid signature and records the probe's touch without an alarm. The vantage
point never holds the key (derived from the installation's secret key), only one ready-made
header per request, and must be assumed to read them all. So a header is worth as little as
possible to whoever holds it:

- it covers the method, the full path and the query string (`GET /documents/X/content`
  and nothing else: not another document, not another query, not a POST);
- it expires at most MAX_VALID_SECONDS after it was made (a signature claiming longer is
  refused outright, however good its MAC);
- it carries a random nonce that a request spends: `UsedProbeNonce`'s primary key makes a
  second use fail in every web worker, on SQLite and PostgreSQL alike;
- it only counts on a request without a cookie or an Authorization header (the probe sends
  neither), so it cannot mute what a signed-in account or an API key does to a decoy.

A replayed, expired, altered, over-long or otherwise refused signature is an outsider's
request like any other: the decoy alarm goes off (its details say why the signature was
refused). The holder of a header can do exactly one thing with it: the very request the
guard asked the vantage point to make, within 30 s, once.

Why a header at all: the guard could instead record "expect GET X within 30 s" and let the
tripwire excuse the first matching request, with nothing sent to the vantage point. It holds
no more power than the header gives (the one request it was asked to make), but anyone else
fetching the same decoy URL in those 30 s would be excused in the probe's place, and the
alarm would then name the probe. The header ties the excuse to the party it was handed to.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest
from django.utils.encoding import escape_uri_path, iri_to_uri

from vigie.guard.models import UsedProbeNonce
from vigie.lib.locked import retry_when_locked

HEADER = "X-Vigie-Probe"
META_KEY = "HTTP_X_VIGIE_PROBE"
# A round's requests start within the fetcher's 20 s deadline and connect within its 5 s
# timeout (probe.ROUND_DEADLINE, probe.REQUEST_TIMEOUT): 30 s leaves 5 s to start it.
MAX_VALID_SECONDS = 30
# Used nonces are kept this long past their expiry: nothing reads them afterwards.
PRUNE_AFTER_SECONDS = 60
_VERSION = "v2"
_FORMAT = re.compile(r"^v2\.(\d{1,12})\.([0-9a-f]{32})\.([0-9a-f]{64})$")


class Check(enum.StrEnum):
    """What a request's probe header amounts to. Only VALID mutes a decoy's alarm."""

    VALID = "valid"
    MISSING = "missing"
    MALFORMED = "malformed"
    ALTERED = "altered"  # the MAC does not cover this method, path, query, expiry, nonce
    EXPIRED = "expired"
    TOO_LONG = "too-long"  # claims to be valid further ahead than MAX_VALID_SECONDS
    REPLAYED = "replayed"
    WITH_CREDENTIALS = "with-credentials"  # a cookie or Authorization header came along
    UNCHECKABLE = "uncheckable"  # the nonce could not be recorded: fail closed


def _key() -> bytes:
    return hashlib.sha256(b"vigie.guard.probe.v2\x00" + settings.SECRET_KEY.encode()).digest()


def target_of(url: str) -> str:
    """The path and query of `url` as Django's `request.get_full_path()` will show them."""
    parts = urlsplit(url)
    target = escape_uri_path(unquote(parts.path or "/"))
    return f"{target}?{iri_to_uri(parts.query)}" if parts.query else target


def _mac(method: str, target: str, expires: int, nonce: str) -> str:
    message = f"{_VERSION}\n{method.upper()}\n{target}\n{expires}\n{nonce}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def sign(
    method: str,
    target: str,
    *,
    now: int | None = None,
    valid_for: int = MAX_VALID_SECONDS,
    nonce: str | None = None,
) -> str:
    """A header for one `method` request of `target` (path and query, see `target_of`)."""
    expires = (int(time.time()) if now is None else now) + valid_for
    nonce = secrets.token_hex(16) if nonce is None else nonce
    return f"{_VERSION}.{expires}.{nonce}.{_mac(method, target, expires, nonce)}"


def check(method: str, target: str, value: str, *, now: int | None = None) -> Check:
    """The signature's own verdict, without spending its nonce (see `verify_request`)."""
    match = _FORMAT.match(value)
    if match is None:
        return Check.MALFORMED
    expires, nonce, mac = int(match.group(1)), match.group(2), match.group(3)
    if not hmac.compare_digest(_mac(method, target, expires, nonce), mac):
        return Check.ALTERED
    current = int(time.time()) if now is None else now
    if expires < current:
        return Check.EXPIRED
    if expires - current > MAX_VALID_SECONDS:
        return Check.TOO_LONG
    return Check.VALID


def verify_request(request: HttpRequest) -> Check:
    """Check the request's probe header and, if it is good, spend its nonce."""
    value = request.META.get(META_KEY)
    if not isinstance(value, str) or not value:
        return Check.MISSING
    verdict = check(request.method or "", request.get_full_path(), value)
    if verdict != Check.VALID:
        return verdict
    if request.META.get("HTTP_COOKIE") or request.META.get("HTTP_AUTHORIZATION"):
        # Not spent: the probe's own request, still to come, must pass.
        return Check.WITH_CREDENTIALS
    _, expires, nonce, _ = value.split(".")

    def spend() -> None:
        # A savepoint: inside a request's transaction a duplicate key must not break it.
        with transaction.atomic():
            UsedProbeNonce.objects.create(
                nonce=nonce, expires_at=datetime.fromtimestamp(int(expires), tz=UTC)
            )

    try:
        # A probe's requests come 32 at a time: a momentary lock is not a reason to cry wolf.
        retry_when_locked(spend)
    except IntegrityError:
        return Check.REPLAYED
    except DatabaseError:
        return Check.UNCHECKABLE
    return Check.VALID


def prune(now: float | None = None) -> int:
    """Forget nonces whose signatures expired: such a signature is refused anyway."""
    current = time.time() if now is None else now
    cutoff = datetime.fromtimestamp(current - PRUNE_AFTER_SECONDS, tz=UTC)
    deleted, _ = UsedProbeNonce.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
