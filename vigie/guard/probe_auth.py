"""Signed probe requests: the guard's own outside-in probe fetches decoy URLs on purpose.

The guard computes a short-lived HMAC over the path and a timestamp (key derived from the
installation's secret key) and hands it to the fetcher as a request header; the canary
tripwire recognises a valid one and records the probe's touch without an alarm. The
fetcher on the vantage point never holds the secret, only ready-made headers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings

HEADER = "X-Vigie-Probe"
META_KEY = "HTTP_X_VIGIE_PROBE"
# A signature is valid this long: enough for one probe round, short for a replay.
VALID_SECONDS = 120


def _key() -> bytes:
    return hashlib.sha256(b"vigie.guard.probe\x00" + settings.SECRET_KEY.encode()).digest()


def sign(path: str, at: int | None = None) -> str:
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(_key(), f"{stamp}|{path}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def is_valid(path: str, value: str, now: int | None = None) -> bool:
    stamp_text, _, mac = value.partition(".")
    if not stamp_text.isdigit() or not mac:
        return False
    stamp = int(stamp_text)
    current = int(time.time()) if now is None else now
    if abs(current - stamp) > VALID_SECONDS:
        return False
    return hmac.compare_digest(sign(path, stamp), value)
