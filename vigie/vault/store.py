"""Where encrypted blobs live: one write-once file per blob, sharded by the id's first two
characters (``root/ab/abcdef....blob``) so no folder grows to millions of entries.

The store only ever sees ciphertext; it neither knows nor needs a key.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

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


class FilesystemBlobStore:
    """Write-once encrypted blobs under `root`; every write is durable when it returns."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"<FilesystemBlobStore {self.root}>"

    def path_for(self, blob_id: str) -> Path:
        validate_blob_id(blob_id)
        return self.root / blob_id[:2] / f"{blob_id}{_SUFFIX}"

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


def get_store() -> FilesystemBlobStore:
    """The blob store of `settings.VIGIE_BLOB_DIR` (cheap to build: not cached)."""
    # Imported here so the vault stays usable (and testable) without Django configured.
    from django.conf import settings

    return FilesystemBlobStore(Path(settings.VIGIE_BLOB_DIR))
