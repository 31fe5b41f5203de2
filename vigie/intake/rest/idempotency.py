"""`Idempotency-Key`: a retried request gets the first answer, never a second document.

A lab's middleware retries when it does not see our answer (a timeout, a dropped
connection). With the same key and the same payload it gets the same status and body back;
with the same key and another payload it gets 409, because that is a bug on its side that
would otherwise lose a document silently.

The record is written by `receive(..., within=...)`, inside the transaction that stores the
document: a crash cannot leave a document without its record (a retry would store it twice)
nor a record without its document (a retry would be told "stored" for nothing). Two
concurrent requests with one key both pass the first look-up; the unique constraint lets
only one commit, and the other then replays the winner's answer (or gets 409).

Only successful receptions are remembered: a refused request stored nothing, so its retry
is simply checked again (and may succeed once the sender fixed it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from vigie.intake.models import ApiKey, IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
# Printable ASCII without spaces at the ends: what every client library sends (UUIDs...).
_VALID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


class InvalidKey(ValueError):
    pass


@dataclass(frozen=True)
class Previous:
    """What was answered the first time for this key, and whether the payload matches."""

    status_code: int
    body: dict[str, Any]
    same_payload: bool


def key_from(headers: dict[str, str] | Any) -> str | None:
    """The request's Idempotency-Key (None if absent), or InvalidKey."""
    value = headers.get(HEADER)
    if value is None:
        return None
    if len(value) > MAX_LENGTH or not _VALID.fullmatch(value):
        raise InvalidKey(value)
    return str(value)


def request_hash(canonical_metadata: bytes, content: bytes) -> str:
    """Identifies the payload: the metadata (canonical form) and the file's bytes."""
    digest = hashlib.sha256()
    # Length-prefixed, so no metadata/file split of the same bytes hashes alike.
    digest.update(len(canonical_metadata).to_bytes(8, "big"))
    digest.update(canonical_metadata)
    digest.update(content)
    return digest.hexdigest()


def previous(api_key: ApiKey, key: str, payload_hash: str) -> Previous | None:
    found = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if found is None:
        return None
    return Previous(found.status_code, dict(found.response), found.request_hash == payload_hash)


def remember(
    api_key: ApiKey, key: str, payload_hash: str, status_code: int, body: dict[str, Any]
) -> None:
    """Call inside the reception's transaction; IntegrityError if the key was just taken."""
    IdempotencyRecord.objects.create(
        api_key=api_key,
        key=key,
        request_hash=payload_hash,
        status_code=status_code,
        response=body,
    )
