"""Decrypted content of a document — for the one door and for maintenance tasks only.

Views must not call this directly: the portal's document view goes through
`records.access.decide()` and the audit first. Maintenance (fsck, backup verify, key checks)
uses it to prove that every stored document still decrypts to the bytes that were received.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

from vigie import vault
from vigie.vault.errors import StoreUnavailable, VaultError

# Re-exported so the portal can catch vault failures without importing the vault (DESIGN:
# portal → records → vault, one way).
__all__ = [
    "ContentMismatch",
    "StoreUnavailable",
    "VaultError",
    "stream_verified",
    "verify",
]


class ContentMismatch(VaultError):
    """The blob authenticates but is not the content recorded for this row."""


class SealedRow(Protocol):
    """What a row must hold to open its blob: a Document or a PendingDocument."""

    id: str
    kek_id: str
    wrapped_key: bytes | memoryview
    size: int
    sha256: str


def stream_verified(
    document: SealedRow,
    *,
    store: vault.BlobStore | None = None,
    keyring: vault.Keyring | None = None,
    digest: bool = True,
) -> Iterator[bytes]:
    """Yield the plaintext; raise after the last chunk if size or SHA-256 disagree.

    Chunk authentication (AES-GCM) already stops tampering; the final hash check catches a
    row whose metadata was edited behind our back. `digest=False` (the portal's door) skips
    the SHA-256 and keeps the size check: every chunk is authenticated with the document's
    id and its position, the last one marked final, so the bytes served are exactly the
    bytes sealed for this id, and hashing 200 KB again on every read bought nothing but
    CPU. Maintenance (fsck, backup verify: `verify`) keeps the hash, so an edited row is
    still found.
    """
    hasher = hashlib.sha256() if digest else None
    size = 0
    # `with`: the blob's file handle closes as soon as the reader stops (client gone).
    # `store` and `keyring` default to the installation's; a backup check passes its own.
    with vault.open(
        document.id, document.kek_id, bytes(document.wrapped_key), store=store, keyring=keyring
    ) as plaintext:
        for chunk in plaintext:
            if hasher is not None:
                hasher.update(chunk)
            size += len(chunk)
            yield chunk
    if size != document.size or (hasher is not None and hasher.hexdigest() != document.sha256):
        raise ContentMismatch(f"document {document.id}: content does not match its record")


def verify(
    document: SealedRow,
    *,
    store: vault.BlobStore | None = None,
    keyring: vault.Keyring | None = None,
) -> None:
    """Decrypt and hash the whole document, discarding the bytes; raise on any problem."""
    for _chunk in stream_verified(document, store=store, keyring=keyring):
        pass
