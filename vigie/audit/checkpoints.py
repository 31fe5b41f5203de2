"""Signed checkpoints of the chain head, kept outside the database.

At least every `VIGIE_AUDIT_CHECKPOINT_EVERY` events (1,000) or `VIGIE_AUDIT_CHECKPOINT_SECONDS`
(60 s: checked at the next append, and by `vigie audit watch` whatever the traffic, see
`anchor_tail`; `vigie audit checkpoint` forces one), the head (seq, hash)
is signed with the Ed25519 audit signing key (in VIGIE_KEYS_DIR) and appended, one JSON line, to
`VIGIE_AUDIT_CHECKPOINT_FILE` (O_APPEND, fsync). Each line is also logged at INFO on the
``vigie.audit.checkpoints`` logger, which a deployment may route to syslog.

Someone with write access to the database alone can recompute a hash chain, but cannot sign:
`verify` checks every checkpoint's signature and that the chain passes through each signed
head, and that the log does not end before the last checkpoint (tail truncation).

Checkpoints are written under the append lock, so lines in the file never go backwards.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vigie.audit import chain
from vigie.lib import durable
from vigie.vault import layout

logger = logging.getLogger("vigie.audit.checkpoints")

FORMAT = "vigie-audit-checkpoint-1"
_SIGN_DOMAIN = b"vigie/audit/checkpoint/v1\x00"
SIGNING_KEY_NAME = layout.SIGNING_KEY_NAME
_MAX_KEY_FILE = 4096


class CheckpointError(Exception):
    """The signing key or the checkpoint file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Checkpoint:
    line: int
    seq: int
    hash: str
    at: str
    key: str
    sig: str

    def message(self) -> bytes:
        body = {
            "at": self.at,
            "format": FORMAT,
            "hash": self.hash,
            "key": self.key,
            "seq": self.seq,
        }
        return _SIGN_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signing_key_path() -> Path:
    return Path(settings.VIGIE_KEYS_DIR) / SIGNING_KEY_NAME


def ensure_signing_key(path: Path | None = None) -> bool:
    """Create the Ed25519 signing key (mode 0600) if absent; True if created. Never overwrites.

    Meant for `vigie keys init` (`startup.bootstrap_home`); also called lazily before the
    first checkpoint.
    """
    path = path or signing_key_path()
    if path.exists():
        return False
    durable.make_private_dir(path.parent)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        durable.write_new(path, [pem])
    except FileExistsError:
        return False  # another process created it first: use theirs
    return True


def load_signing_key(path: Path | None = None) -> Ed25519PrivateKey:
    path = path or signing_key_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CheckpointError(f"audit signing key not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(
            f"audit signing key {path} cannot be opened: {exc.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"audit signing key {path} is not a regular file")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise CheckpointError(
                f"audit signing key {path} is accessible to group/others; run chmod 600 {path}"
            )
        data = os.read(fd, _MAX_KEY_FILE)
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CheckpointError(f"audit signing key {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"audit signing key {path} is not an Ed25519 key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_path() -> Path:
    return Path(settings.VIGIE_AUDIT_CHECKPOINT_FILE)


def is_due(head: object) -> bool:
    """Cheap: compares numbers already read during the append."""
    seq: int = getattr(head, "seq", 0)
    checkpoint_seq: int = getattr(head, "checkpoint_seq", 0)
    checkpoint_at: datetime | None = getattr(head, "checkpoint_at", None)
    if seq <= checkpoint_seq:
        return False
    if seq - checkpoint_seq >= settings.VIGIE_AUDIT_CHECKPOINT_EVERY or checkpoint_at is None:
        return True
    age = timezone.now() - checkpoint_at
    return age >= timedelta(seconds=settings.VIGIE_AUDIT_CHECKPOINT_SECONDS)


def last_signed_seq(path: Path | None = None) -> int:
    """The seq of the file's last well-formed line (0 if none), reading only its end.

    The watcher decides from this, not from the head row's `checkpoint_seq`: someone with
    database access alone could set that column to the head to stop checkpoints forever.
    """
    path = path or checkpoint_path()
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - 8192, 0))
            tail = handle.read()
    except FileNotFoundError:
        return 0
    for raw in reversed(tail.split(b"\n")):
        try:
            seq = json.loads(raw)["seq"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(seq, int):
            return seq
    return 0


def anchor_tail() -> Checkpoint | None:
    """Sign the head if events lie past the last signed checkpoint in the file.

    `vigie audit watch` calls this every `VIGIE_AUDIT_CHECKPOINT_SECONDS` whatever the traffic,
    so the events an attacker could rewrite unnoticed are at most one interval old.
    """
    return write_checkpoint(force=True, past=last_signed_seq())


def write_checkpoint(*, force: bool = False, past: int | None = None) -> Checkpoint | None:
    """Sign the current head and append it to the checkpoint file; None if nothing new.

    `past`: the last seq known to be signed, when the caller does not trust the head row's.
    """
    from vigie.audit.head import lock_and_read_head
    from vigie.audit.models import AuditHead

    ensure_signing_key()
    private = load_signing_key()
    with transaction.atomic():
        seq, hash_, checkpoint_seq, checkpoint_at = lock_and_read_head()
        head = _Head(seq, checkpoint_seq, checkpoint_at)
        signed = checkpoint_seq if past is None else past
        if seq == 0 or seq == signed or not (force or is_due(head)):
            return None
        unsigned = Checkpoint(
            line=0,
            seq=seq,
            hash=hash_,
            at=chain.canonical_time(timezone.now()),
            key=key_id(private.public_key()),
            sig="",
        )
        signature = base64.b64encode(private.sign(unsigned.message())).decode()
        line = {
            "format": FORMAT,
            "seq": seq,
            "hash": hash_,
            "at": unsigned.at,
            "key": unsigned.key,
            "sig": signature,
        }
        _append_line(checkpoint_path(), json.dumps(line, sort_keys=True) + "\n")
        AuditHead.objects.filter(pk=1).update(checkpoint_seq=seq, checkpoint_at=timezone.now())
    logger.info("audit checkpoint %s", json.dumps(line, sort_keys=True))
    return Checkpoint(0, seq, hash_, unsigned.at, unsigned.key, signature)


@dataclass(frozen=True)
class _Head:
    seq: int
    checkpoint_seq: int
    checkpoint_at: datetime | None


def _append_line(path: Path, text: str) -> None:
    created = durable.make_private_dir(path.parent)
    fd = os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, durable.PRIVATE_FILE_MODE
    )
    try:
        # flock: appends from several processes never interleave (they hold the append lock
        # too, but a manual `vigie audit checkpoint` on another database must not either).
        fcntl.flock(fd, fcntl.LOCK_EX)
        durable.write_all(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if created or path.stat().st_size == len(text.encode("utf-8")):
        durable.fsync_dir(path.parent)


def read_checkpoints(path: Path | None = None) -> tuple[list[Checkpoint], list[tuple[int, str]]]:
    """Every well-formed line, and (line number, reason) for every malformed one."""
    path = path or checkpoint_path()
    good: list[Checkpoint] = []
    bad: list[tuple[int, str]] = []
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return good, bad
    for number, raw in enumerate(content.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            checkpoint = Checkpoint(
                number, item["seq"], item["hash"], item["at"], item["key"], item["sig"]
            )
            if item.get("format") != FORMAT or not isinstance(checkpoint.seq, int):
                raise ValueError("unknown format")
            if not all(
                isinstance(v, str) for v in (checkpoint.hash, checkpoint.key, checkpoint.sig)
            ):
                raise ValueError("fields must be strings")
        except (ValueError, KeyError, TypeError):
            bad.append((number, "not a valid checkpoint line"))
            continue
        good.append(checkpoint)
    return good, bad


def signature_ok(checkpoint: Checkpoint, public: Ed25519PublicKey) -> bool:
    if checkpoint.key != key_id(public):
        return False
    try:
        public.verify(base64.b64decode(checkpoint.sig, validate=True), checkpoint.message())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
