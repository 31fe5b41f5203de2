"""The vault: documents encrypted at rest, each with its own key, wrapped by the keyring.

Envelope encryption: every document gets a random data key that encrypts its content
(`envelope`) into a write-once blob (`store`); the data key is stored wrapped by a
key-encryption key from the keyring (`keyring`), next to the document's row. Rotating KEKs
rewraps 60 bytes per document and never touches the content.

This is a library, not a Django app: no models, no HTTP, no users. Documents go in and come
out only through `records` (`ingest` seals them; `records.content` opens them, for the portal
after the access decision and the audit event, see DESIGN.md, "one door for document bytes",
and for maintenance). Other apps use it for their own secrets and files: accounts seals
authenticator seeds, backup seals a snapshot's files, and audit, backup and the startup
checks share its durable-write steps (`vigie.lib.durable`) and its rule of where keys may live (`layout`).
The document id is the blob id, so it must be 16 to 64 letters, digits, "_" or "-".
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from vigie.lib import durable
from vigie.vault.envelope import new_data_key, open_chunks, seal_chunks
from vigie.vault.errors import (
    BlobMissing,
    DocumentTooLarge,
    IntegrityError,
    KeyringError,
    StoreUnavailable,
    VaultError,
)
from vigie.vault.kek_store import Keyring, get_keyring
from vigie.vault.small import open_record, open_small, seal_record, seal_small
from vigie.vault.store import (
    BlobStore,
    FilesystemBlobStore,
    get_blob_store,
    get_store,
    validate_blob_id,
)

__all__ = [
    "BlobMissing",
    "BlobStore",
    "DocumentTooLarge",
    "FilesystemBlobStore",
    "IntegrityError",
    "Keyring",
    "KeyringError",
    "PlaintextStream",
    "SealedDocument",
    "StoreUnavailable",
    "VaultError",
    "get_blob_store",
    "get_keyring",
    "get_store",
    "open",
    "open_file",
    "open_record",
    "open_small",
    "rewrap",
    "seal",
    "seal_file",
    "seal_record",
    "seal_small",
]


@dataclass(frozen=True)
class SealedDocument:
    """What the document's row must keep to open it again, and what was sealed."""

    kek_id: str
    wrapped_key: bytes
    size: int
    sha256: str  # hex digest of the plaintext


def seal(
    document_id: str,
    source: BinaryIO,
    *,
    store: BlobStore | None = None,
    keyring: Keyring | None = None,
    chunk_size: int | None = None,
    max_size: int | None = None,
) -> SealedDocument:
    """Encrypt `source` into the blob `document_id`; durable on disk when this returns.

    `max_size` defaults to settings.VIGIE_MAX_DOCUMENT_SIZE: an unbounded ingest is never
    what a caller wants. On any error (DocumentTooLarge, a failing source, a full disk)
    nothing is left in the store.
    """
    if store is None:
        store = get_blob_store()
    if keyring is None:
        keyring = get_keyring()
    if chunk_size is None or max_size is None:
        from django.conf import settings

        if chunk_size is None:
            chunk_size = int(settings.VIGIE_VAULT_CHUNK_SIZE)
        if max_size is None:
            max_size = int(settings.VIGIE_MAX_DOCUMENT_SIZE)
    validate_blob_id(document_id)  # an invalid id fails before any work is done
    data_key = new_data_key()
    # Wrapped first: a keyring problem must stop us before any blob exists.
    kek_id, wrapped_key = keyring.wrap(data_key, document_id)
    sealed = seal_chunks(data_key, document_id, source, chunk_size, max_size)
    store.write(document_id, sealed)
    return SealedDocument(kek_id, wrapped_key, sealed.size, sealed.sha256)


class PlaintextStream(Iterator[bytes]):
    """The authenticated plaintext chunks of one document; closes its blob when exhausted,
    on error, or on `close()` (Django's StreamingHttpResponse calls it when done)."""

    def __init__(self, chunks: Generator[bytes, None, None], blob: BinaryIO) -> None:
        self._chunks = chunks
        self._blob = blob
        self._first: bytes | None = None
        try:
            # Reading the first chunk now makes the common failures (wrong key, another
            # document's blob, tampered header, a document of one chunk that was altered)
            # raise from `open()` itself, before a caller has started a response.
            self._first = next(chunks)
        except StopIteration:
            self.close()
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> PlaintextStream:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._first = None
        self._chunks.close()
        self._blob.close()

    def __enter__(self) -> PlaintextStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# Shadows the builtin inside this module on purpose: `vault.open(...)` reads as what it does.
def open(
    document_id: str,
    kek_id: str,
    wrapped_key: bytes,
    *,
    store: BlobStore | None = None,
    keyring: Keyring | None = None,
) -> PlaintextStream:
    """Decrypt the document: an iterator of plaintext chunks, each authenticated.

    Raises KeyringError, IntegrityError or BlobMissing here when the key or blob is wrong or
    absent; a blob damaged past its first chunk raises IntegrityError during iteration.
    """
    if store is None:
        store = get_blob_store()
    if keyring is None:
        keyring = get_keyring()
    data_key = keyring.unwrap(kek_id, wrapped_key, document_id)
    blob = store.open(document_id)
    try:
        chunks = open_chunks(data_key, document_id, blob)
    except BaseException:
        blob.close()
        raise
    return PlaintextStream(chunks, blob)


# Files sealed outside the blob store (the backup's database snapshot) use bigger chunks: they
# are read whole, never served piece by piece, so fewer tags cost less and change nothing.
FILE_CHUNK_SIZE = 1024 * 1024


def _check_file_label(label: str) -> None:
    # Given a document's id, open_file would open that document's blob as `open` does, past
    # records' access decision and audit: the "/" that no document id has rules that out.
    if not isinstance(label, str) or "/" not in label:
        raise VaultError(
            f"invalid label {label!r} for a sealed file: it must contain '/' "
            "(documents are opened through `open`, never as files)"
        )


def seal_file(
    label: str,
    source: BinaryIO,
    target: Path,
    *,
    keyring: Keyring | None = None,
    chunk_size: int = FILE_CHUNK_SIZE,
) -> SealedDocument:
    """Encrypt `source` into the new file `target` (mode 0600, durable when this returns).

    The same envelope as a document, for what is not one: a fresh data key wrapped by the
    active KEK, AES-256-GCM chunks. `label` takes the document id's place in every chunk's and
    in the wrapped key's associated data, so the file opens only under that label; give it a
    "/" (which no document id may contain) and a sealed file can never pass for a document.
    No size limit. On any error, `target` does not exist.
    """
    _check_file_label(label)
    if keyring is None:
        keyring = get_keyring()
    data_key = new_data_key()
    kek_id, wrapped_key = keyring.wrap(data_key, label)
    sealed = seal_chunks(data_key, label, source, chunk_size, None)
    durable.write_new(target, sealed)
    return SealedDocument(kek_id, wrapped_key, sealed.size, sealed.sha256)


def open_file(
    label: str,
    kek_id: str,
    wrapped_key: bytes,
    path: Path,
    *,
    keyring: Keyring | None = None,
) -> PlaintextStream:
    """Decrypt a file made by `seal_file`: authenticated plaintext chunks, as `open` gives.

    FileNotFoundError if `path` is missing; KeyringError or IntegrityError as for `open`.
    """
    _check_file_label(label)
    if keyring is None:
        keyring = get_keyring()
    data_key = keyring.unwrap(kek_id, wrapped_key, label)
    handle = path.open("rb", buffering=0)
    try:
        chunks = open_chunks(data_key, label, handle)
    except BaseException:
        handle.close()
        raise
    return PlaintextStream(chunks, handle)


def rewrap(
    document_id: str, kek_id: str, wrapped_key: bytes, *, keyring: Keyring | None = None
) -> tuple[str, bytes]:
    """Wrap the document's data key with the active KEK; returns the new (kek_id, wrapped).

    The content is not touched. The caller stores the result, then the old KEK can go once
    no document uses it.
    """
    if keyring is None:
        keyring = get_keyring()
    data_key = keyring.unwrap(kek_id, wrapped_key, document_id)
    return keyring.wrap(data_key, document_id)
