"""Where encrypted blobs live. `BlobStore` is what the vault, records and backup need of a
store; two backends provide it: `FilesystemBlobStore` (the default: one write-once file per
blob, sharded by the id's first two characters, ``root/ab/abcdef....blob``, so no folder grows
to millions of entries) and `S3BlobStore` (vigie/vault/s3store.py, VIGIE_BLOB_STORE=s3).

A store only ever sees ciphertext; it neither knows nor needs a key.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from vigie.lib import durable
from vigie.vault.errors import BlobMissing, VaultError

# Letters, digits, "_" and "-" only: an id can never climb out of the store ("..", "/"),
# hide itself ("."), or collide with a temporary file name.
_BLOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SUFFIX = ".blob"
TEMP_PREFIX = ".tmp-"


def validate_blob_id(blob_id: str) -> str:
    """Return `blob_id` if it is a valid id, else raise VaultError."""
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    if not isinstance(blob_id, str) or not _BLOB_ID_RE.fullmatch(blob_id):
        raise VaultError(
            f"invalid blob id {blob_id!r}: expected 16 to 64 letters, digits, '_' or '-'"
        )
    return blob_id


@dataclass(frozen=True)
class UnfinishedWrite:
    """What an interrupted write left behind: a temporary file, an open multipart upload."""

    name: str  # for humans: a path, or the object key and upload id
    started_at: float  # seconds since the epoch
    handle: str  # what `discard` needs: a path, or "key\nupload id"

    def __str__(self) -> str:
        return self.name


class BlobStore(Protocol):
    """Write-once ciphertext blobs by id. Every write is all or nothing and durable when it
    returns; an existing blob is never overwritten (VaultError). A store that cannot be
    reached raises StoreUnavailable, never a library's own exception."""

    def describe(self) -> str:
        """Where the blobs are, for messages (a folder, an s3:// URL)."""
        ...

    def exists(self, blob_id: str) -> bool: ...

    def write(self, blob_id: str, chunks: Iterable[bytes]) -> int: ...

    def open(self, blob_id: str) -> BinaryIO: ...

    def delete(self, blob_id: str) -> None: ...

    def iter_ids(self) -> Iterator[str]: ...

    def modified_at(self, blob_id: str) -> float:
        """When the blob was written (seconds since the epoch); BlobMissing if absent."""
        ...

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        """What interrupted writes left (possibly a write still running: check its age)."""
        ...

    def discard(self, write: UnfinishedWrite) -> None: ...


class FilesystemBlobStore:
    """Write-once encrypted blobs under `root`; every write is durable when it returns."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"<FilesystemBlobStore {self.root}>"

    def describe(self) -> str:
        return str(self.root)

    def path_for(self, blob_id: str) -> Path:
        shard, name = self.locate(blob_id)
        return shard / name

    def locate(self, blob_id: str) -> tuple[Path, str]:
        """The blob's shard folder and its file name in it (VaultError for an invalid id),
        for a writer that works relative to the folder (`vault.group`)."""
        validate_blob_id(blob_id)
        return self.root / blob_id[:2], f"{blob_id}{_SUFFIX}"

    def exists(self, blob_id: str) -> bool:
        return self.path_for(blob_id).is_file()

    def write(self, blob_id: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenation of `chunks` as `blob_id`; return the number of bytes.

        All or nothing: the bytes go to a temporary file in the blob's own folder, which is
        fsynced, then given its final name, then the folder is fsynced. If anything fails,
        including the iterator itself (e.g. DocumentTooLarge), the temporary file is removed
        and the exception propagates. An existing blob is never overwritten.
        """
        final = self.path_for(blob_id)
        if os.path.lexists(final):
            # Checked before reading any input, so a duplicate costs nothing.
            raise VaultError(f"blob {blob_id} already exists in {self.root}; blobs are write-once")
        shard = final.parent
        durable.make_private_dir(shard)
        tmp = shard / f"{TEMP_PREFIX}{blob_id}-{secrets.token_hex(6)}"
        try:
            return durable.write_new(final, chunks, tmp=tmp)
        except FileExistsError:
            raise VaultError(
                f"blob {blob_id} already exists in {self.root}; blobs are write-once"
            ) from None

    def open(self, blob_id: str) -> BinaryIO:
        """The blob for reading (unbuffered: readers read whole chunks into their own buffers)."""
        path = self.path_for(blob_id)
        try:
            return path.open("rb", buffering=0)
        except FileNotFoundError:
            raise BlobMissing(f"blob {blob_id} not found in {self.root}") from None

    def delete(self, blob_id: str) -> None:
        """Remove a blob durably; BlobMissing if there is none."""
        path = self.path_for(blob_id)
        try:
            path.unlink()
        except FileNotFoundError:
            raise BlobMissing(f"blob {blob_id} not found in {self.root}") from None
        durable.fsync_dir(path.parent)

    def modified_at(self, blob_id: str) -> float:
        try:
            return self.path_for(blob_id).stat().st_mtime
        except FileNotFoundError:
            raise BlobMissing(f"blob {blob_id} not found in {self.root}") from None

    def _shards(self) -> Iterator[os.DirEntry[str]]:
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                yield entry

    def iter_ids(self) -> Iterator[str]:
        """Ids of all complete blobs (temporary files are never listed)."""
        for shard in self._shards():
            with os.scandir(shard.path) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(_SUFFIX) or not entry.is_file(follow_symlinks=False):
                        continue
                    blob_id = name[: -len(_SUFFIX)]
                    if _BLOB_ID_RE.fullmatch(blob_id) and blob_id[:2] == shard.name:
                        yield blob_id

    def iter_stale_temp_files(self) -> Iterator[Path]:
        """Temporary files of interrupted writes (a crash, kill -9).

        A write in progress in another process also has one: callers should only remove
        files older than any write could take (say an hour, by mtime). Each holds ciphertext
        only, and is never a blob of its own: deleting it is always safe once it is stale.
        """
        for shard in self._shards():
            with os.scandir(shard.path) as entries:
                for entry in entries:
                    if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                        yield Path(entry.path)

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        for path in self.iter_stale_temp_files():
            try:
                started = path.stat().st_mtime
            except FileNotFoundError:
                continue  # its write just finished or was cleaned up
            yield UnfinishedWrite(str(path), started, str(path))

    def discard(self, write: UnfinishedWrite) -> None:
        Path(write.handle).unlink(missing_ok=True)


def get_blob_store() -> BlobStore:
    """The installation's blob store: `VIGIE_BLOB_DIR`, or the S3 bucket when
    VIGIE_BLOB_STORE=s3 (proved write-once the first time in each process)."""
    # Imported here so the vault stays usable (and testable) without Django configured.
    from django.conf import settings

    if settings.VIGIE_BLOB_STORE == "s3":
        from vigie.vault.s3store import store_from_settings

        return store_from_settings()
    return FilesystemBlobStore(Path(settings.VIGIE_BLOB_DIR))


def get_store() -> FilesystemBlobStore:
    """The filesystem blob store of `settings.VIGIE_BLOB_DIR` (cheap to build: not cached).

    For what only makes sense on a folder (tests that damage a blob file, tools that look at
    paths). Code that stores or reads blobs takes `get_blob_store()`, which follows
    VIGIE_BLOB_STORE; asked while the installation's blobs are in S3, this refuses rather
    than hand out a folder that holds none of them.
    """
    from django.conf import settings

    if settings.VIGIE_BLOB_STORE != "file":
        raise VaultError(
            f"VIGIE_BLOB_STORE={settings.VIGIE_BLOB_STORE}: the blobs are not in a folder "
            "(this code must use vault.get_blob_store())"
        )
    return FilesystemBlobStore(Path(settings.VIGIE_BLOB_DIR))
