"""Sealing many small documents and making them durable together (group commit).

`vault.seal` makes each blob durable on its own: fsync the file, publish its name, fsync the
folder — two waits for the disk per document, one after the other. A writer that stores
many documents per round (the MLLP committer) uses a `SealGroup` instead: every blob of the
round is encrypted, written and given its final name first, then `sync()` fsyncs all their
files and their folders at once, from a few threads, so the file system commits them in one
or two journal commits rather than two per document. A caller may reference a blob (commit
its row) only after `sync()` returned.

Crash safety is unchanged where it matters: until `sync()` returns, no row names these
blobs, so a crash leaves at most orphans (ciphertext nobody references, perhaps cut short)
that `vigie vault fsck` reports and removes, as for a crash between `seal` and a row today.
Ids that share their first two characters share a shard folder, hence one folder fsync: the
caller chooses them (see `records.batch`).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigie.lib import durable
from vigie.vault.envelope import new_data_key, seal_chunks
from vigie.vault.errors import DocumentTooLarge, VaultError
from vigie.vault.kek_store import Keyring
from vigie.vault.store import BlobStore, FilesystemBlobStore

__all__ = ["DirectSealGroup", "SealGroup", "seal_group"]

# A new blob, never an existing one; a shard folder, read-only (enough to fsync it).
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass
class _Folder:
    """A shard folder of the round, opened once: its blobs are created relative to it (no
    path lookup per file) and it is fsynced through the same descriptor."""

    path: Path
    fd: int


@dataclass
class _Written:
    blob_id: str
    folder: _Folder
    name: str
    fd: int  # kept open until `sync()`: fsync needs the file, and reopening costs a lookup


class SealGroup:
    """Blobs sealed for one round; durable together once `sync()` returns.

    Each blob is written straight under its final name, created with O_EXCL (write-once:
    an existing blob is refused atomically, never overwritten), not under a temporary name
    then linked: until `sync()` returns and a row commits, nothing refers to it, so the
    temporary name bought nothing here but three more calls (a check, a link, an unlink)
    and two more folder entries for the journal. A blob whose write fails is removed; one
    cut short by a crash is an orphan, as an unsynced one already was, which `vault fsck`
    removes once older than its grace period (a write in progress is never that old).
    """

    def __init__(self, store: FilesystemBlobStore, keyring: Keyring, chunk_size: int) -> None:
        self.store = store
        self.keyring = keyring
        self.chunk_size = chunk_size
        self._written: dict[str, _Written] = {}
        self._folders: dict[Path, _Folder] = {}
        # Folders whose entries changed: a new shard folder was created in them.
        self._parents: set[Path] = set()

    def seal(self, document_id: str, data: bytes, max_size: int) -> tuple[str, bytes, int, str]:
        """Encrypt `data` into the blob `document_id`, written but not yet durable: returns
        (kek_id, wrapped_key, size, sha256) for the row. DocumentTooLarge, VaultError or
        OSError with nothing left behind."""
        shard, name = self.store.locate(document_id)
        if len(data) > max_size:
            raise DocumentTooLarge(f"the document is larger than the limit of {max_size} bytes")
        folder = self._folder(shard)
        try:
            fd = os.open(name, _CREATE, durable.PRIVATE_FILE_MODE, dir_fd=folder.fd)
        except FileExistsError:
            raise VaultError(f"blob {document_id} already exists; blobs are write-once") from None
        try:
            # 0600 whatever the umask, as `durable.create_private` makes every vault file.
            os.fchmod(fd, durable.PRIVATE_FILE_MODE)
            data_key = new_data_key()
            kek_id, wrapped_key = self.keyring.wrap(data_key, document_id)
            sealed = seal_chunks(data_key, document_id, io.BytesIO(data), self.chunk_size, max_size)
            for chunk in sealed:
                durable.write_all(fd, chunk)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder.fd)
            raise
        self._written[document_id] = _Written(document_id, folder, name, fd)
        return kek_id, wrapped_key, sealed.size, sealed.sha256

    def _folder(self, shard: Path) -> _Folder:
        """The blob's shard folder, opened once per round (created if new: its own entry is
        then fsynced with the round's in `sync()`, not at once as
        `durable.make_private_dir` does, one wait fewer)."""
        folder = self._folders.get(shard)
        if folder is not None:
            return folder
        try:
            fd = os.open(shard, _FOLDER)
        except FileNotFoundError:
            self._make_shard(shard)
            fd = os.open(shard, _FOLDER)
        folder = self._folders[shard] = _Folder(shard, fd)
        return folder

    def _make_shard(self, shard: Path) -> None:
        durable.make_private_dir(shard.parent)  # the store's root: exists but once
        # Made by us or, a moment ago, by another writer that may not have fsynced its
        # entry yet: either way ours is only durable once the parent is fsynced.
        self._parents.add(shard.parent)
        try:
            shard.mkdir(mode=durable.PRIVATE_DIR_MODE)
        except FileExistsError:
            return
        shard.chmod(durable.PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask

    def sync(self, executor: Executor | None = None) -> None:
        """fsync every file written and every folder their names (or new shard folders)
        were written in; with `executor`, all at once (the disk then serves them in one or
        two journal commits). OSError if any fails: the caller must then treat none of
        them as durable. The order among them does not matter: nothing refers to these
        blobs until every one of these calls has returned."""
        files: list[int | Path] = [w.fd for w in self._written.values()]
        folders = {w.folder.fd for w in self._written.values()}
        _run(executor, _fsync, [*files, *sorted(folders), *sorted(self._parents)])
        self._parents.clear()

    def discard(self, blob_ids: Iterable[str]) -> None:
        """Remove these blobs (their rows will not commit); missing ones are ignored."""
        for blob_id in blob_ids:
            written = self._written.pop(blob_id, None)
            if written is None:
                continue
            os.close(written.fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(written.name, dir_fd=written.folder.fd)

    def close(self) -> None:
        """Close the files and folders still open (after `sync()`, or when giving the round
        up)."""
        for fd in [w.fd for w in self._written.values()] + [f.fd for f in self._folders.values()]:
            with contextlib.suppress(OSError):  # already closed: nothing to release
                os.close(fd)
        self._written.clear()
        self._folders.clear()

    def __len__(self) -> int:
        return len(self._written)


class DirectSealGroup:
    """`SealGroup`'s interface for a store whose every write is durable when it returns (an
    S3-compatible store: an object exists only once its upload completed): there is nothing
    to make durable together, so `sync()` has nothing left to do."""

    def __init__(self, store: BlobStore, keyring: Keyring, chunk_size: int) -> None:
        self.store = store
        self.keyring = keyring
        self.chunk_size = chunk_size
        self._written: list[str] = []

    def seal(self, document_id: str, data: bytes, max_size: int) -> tuple[str, bytes, int, str]:
        if len(data) > max_size:
            raise DocumentTooLarge(f"the document is larger than the limit of {max_size} bytes")
        data_key = new_data_key()
        kek_id, wrapped_key = self.keyring.wrap(data_key, document_id)
        sealed = seal_chunks(data_key, document_id, io.BytesIO(data), self.chunk_size, max_size)
        self.store.write(document_id, sealed)  # write-once: the store refuses an existing id
        self._written.append(document_id)
        return kek_id, wrapped_key, sealed.size, sealed.sha256

    def sync(self, executor: Executor | None = None) -> None:
        """Every blob is durable already (see the class)."""

    def discard(self, blob_ids: Iterable[str]) -> None:
        for blob_id in blob_ids:
            if blob_id in self._written:
                self._written.remove(blob_id)
                with contextlib.suppress(VaultError, OSError):  # fsck finds what is left
                    self.store.delete(blob_id)

    def close(self) -> None:
        self._written.clear()

    def __len__(self) -> int:
        return len(self._written)


def seal_group(store: BlobStore, keyring: Keyring, chunk_size: int) -> SealGroup | DirectSealGroup:
    """The group for `store`: fsyncs shared across a round on the filesystem, plain
    durable writes elsewhere."""
    if isinstance(store, FilesystemBlobStore):
        return SealGroup(store, keyring, chunk_size)
    return DirectSealGroup(store, keyring, chunk_size)


def _fsync(target: int | Path) -> None:
    if isinstance(target, Path):
        durable.fsync_dir(target)
    else:
        os.fsync(target)


def _run(executor: Executor | None, work: Callable[[Any], None], items: list[Any]) -> None:
    if executor is None or len(items) < 2:
        for item in items:
            work(item)
        return
    # list(): map is lazy, and an exception surfaces only when its result is read.
    list(executor.map(work, items))
