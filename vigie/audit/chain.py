"""The hash chain: how one audit event is encoded and chained to the one before it.

In the manner of RFC 6962 (Certificate Transparency), leaves and links are hashed in separate
domains, so a leaf can never be passed off as a link or the reverse::

    leaf  = SHA-256(0x00 || canonical JSON of the event, seq included)
    link  = SHA-256(0x01 || previous link (32 bytes) || leaf)

The first event chains to 32 zero bytes. The canonical JSON is one array in a fixed order,
ASCII only (``ensure_ascii``), no spaces, object keys sorted, no floats anywhere, times as
UTC ISO 8601 with microseconds and a ``Z``. It is the same bytes whether the row comes back
from SQLite or PostgreSQL, so a database moved from one to the other still verifies.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

FORMAT = "vigie-audit-1"
GENESIS = bytes(32)
GENESIS_HEX = GENESIS.hex()

_LEAF = b"\x00"
_LINK = b"\x01"

# The event's chained fields, in the order of the canonical array (after FORMAT). `extra`
# (a JSON object) always comes last.
FIELDS: tuple[str, ...] = (
    "seq",
    "at",
    "action",
    "actor_id",
    "actor_username",
    "actor_role",
    "actor_display",
    "patient_id",
    "patient_ipp",
    "document_id",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
    "reason",
)


def _make_dumps() -> Callable[[Any], str]:
    """Compact, sorted, ASCII JSON. The C encoder called directly is ~40% faster than
    `json.dumps` (no per-call option handling), which matters for verify's hot loop."""
    slow = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pure-Python json (no C accelerator): same bytes, slower
        return slow
    fast = make(None, None, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
    join = "".join

    def dumps(value: Any) -> str:
        return join(fast(value, 0))

    return dumps


dumps = _make_dumps()
_dumps = dumps
_sha256 = hashlib.sha256


def canonical_time(moment: datetime) -> str:
    """`2026-11-29T23:00:00.000123Z`: UTC, always six fractional digits."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_extra(extra: Mapping[str, Any]) -> str:
    return _dumps(extra)


def leaf_bytes(fields: Sequence[Any], extra_json: str) -> bytes:
    """The canonical encoding; `fields` follow FIELDS with `at` already canonical."""
    head = _dumps((FORMAT, *fields))
    return (head[:-1] + "," + extra_json + "]").encode("ascii")


def link(prev: bytes, fields: Sequence[Any], extra_json: str) -> bytes:
    leaf = _sha256(_LEAF + leaf_bytes(fields, extra_json)).digest()
    return _sha256(_LINK + prev + leaf).digest()


def clean_json(value: Any, *, where: str = "extra") -> Any:
    """A JSON value both engines store and return identically: no floats, str keys, no NUL."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        raise TypeError(f"{where}: floats are not allowed in audit events (use int or str)")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: object keys must be strings, got {key!r}")
            out[clean_text(key)] = clean_json(item, where=f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [clean_json(item, where=f"{where}[]") for item in value]
    raise TypeError(f"{where}: {type(value).__name__} is not allowed in audit events")


def clean_text(value: str, limit: int | None = None) -> str:
    """PostgreSQL refuses NUL and lone surrogates; replace them rather than lose the event."""
    text = value.replace("\x00", "\ufffd")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit is not None else text
