"""The files of a snapshot, sealed: whoever steals the backup disk reads nothing.

Every file of a snapshot but its manifest (the database dump, the audit checkpoints, the
exposure policy) is sealed with the vault's envelope encryption, as documents are: a fresh
AES-256 data key per file, AES-256-GCM chunks, the data key wrapped by the keyring's active
KEK. The KEK id and the wrapped key go into the signed manifest; the KEK itself is in the
keyring and in the keys export, never in DEST. So a backup disk on its own holds ciphertext,
wrapped keys and a manifest of random ids, sizes and hashes, and nothing more.

Each file is sealed under the label `backup/<snapshot id>/<role>`: a sealed file opens only as
the very file of the very snapshot it was made for (one moved into another snapshot, or into
another role, fails authentication), and the "/" keeps it from ever passing for a document.

The plaintext is hashed too (SHA-256, in the manifest): decrypting proves the file is the
one that was sealed, whatever key was used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vigie import vault
from vigie.lib import durable

SUFFIX = ".sealed"


class SealedFileError(Exception):
    """A sealed file of the snapshot cannot be opened; the message says which and why."""


@dataclass(frozen=True)
class SealedEntry:
    """What the manifest keeps to open one sealed file."""

    kek_id: str
    wrapped_key: bytes
    size: int  # of the plaintext
    sha256: str  # of the plaintext

    def to_json(self) -> dict[str, Any]:
        return {
            "kek_id": self.kek_id,
            "wrapped_key": base64.b64encode(self.wrapped_key).decode("ascii"),
            "size": self.size,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, raw: Any) -> SealedEntry | None:
        """The entry, or None if `raw` is not a well-formed one."""
        if not isinstance(raw, dict):
            return None
        kek_id, wrapped, size, sha256 = (
            raw.get("kek_id"),
            raw.get("wrapped_key"),
            raw.get("size"),
            raw.get("sha256"),
        )
        if not (
            isinstance(kek_id, str)
            and isinstance(wrapped, str)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and isinstance(sha256, str)
        ):
            return None
        try:
            key = base64.b64decode(wrapped, validate=True)
        except (binascii.Error, ValueError):
            return None
        return cls(kek_id, key, size, sha256)


def label(snapshot_id: str, role: str) -> str:
    return f"backup/{snapshot_id}/{role}"


def seal(
    snapshot_id: str, role: str, source: BinaryIO, target: Path, keyring: vault.Keyring
) -> SealedEntry:
    """Encrypt `source` into the new file `target` (0600, durable)."""
    sealed = vault.seal_file(label(snapshot_id, role), source, target, keyring=keyring)
    return SealedEntry(sealed.kek_id, sealed.wrapped_key, sealed.size, sealed.sha256)


def seal_bytes(
    snapshot_id: str, role: str, content: bytes, target: Path, keyring: vault.Keyring
) -> SealedEntry:
    import io

    return seal(snapshot_id, role, io.BytesIO(content), target, keyring)


def extract(
    snapshot_id: str,
    role: str,
    entry: SealedEntry | None,
    source: Path,
    target: Path,
    keyring: vault.Keyring,
) -> None:
    """The file's plaintext into the new private file `target`: decrypted when `entry` says
    how, copied as it is from a snapshot of the clear format (entry None)."""
    if entry is not None:
        decrypt_to(snapshot_id, role, entry, source, target, keyring)
        return
    try:
        with source.open("rb", buffering=0) as handle:
            durable.write_new(target, iter(lambda: handle.read(vault.FILE_CHUNK_SIZE), b""))
    except FileNotFoundError:
        raise SealedFileError(f"{role} file {source} is missing") from None


def decrypt_to(
    snapshot_id: str,
    role: str,
    entry: SealedEntry,
    source: Path,
    target: Path,
    keyring: vault.Keyring,
) -> None:
    """Write the plaintext of `source` into the new private file `target`, checked whole.

    SealedFileError names the file and the reason (unknown KEK, wrong keyring, tampering,
    a plaintext that is not the one sealed); `target` is then removed.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        stream = vault.open_file(
            label(snapshot_id, role), entry.kek_id, entry.wrapped_key, source, keyring=keyring
        )
    except FileNotFoundError:
        raise SealedFileError(f"{role} file {source} is missing") from None
    except vault.VaultError as exc:
        raise SealedFileError(f"{role} file {source.name} cannot be opened: {exc}") from None
    try:
        fd = durable.create_private(target)
        try:
            with stream:
                for chunk in stream:
                    digest.update(chunk)
                    size += len(chunk)
                    durable.write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise SealedFileError(
                f"{role} file {source.name} decrypts to content whose size or SHA-256 is not "
                "the manifest's"
            )
    except vault.VaultError as exc:
        target.unlink(missing_ok=True)
        raise SealedFileError(f"{role} file {source.name} does not decrypt: {exc}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
