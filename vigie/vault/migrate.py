"""`vigie vault migrate --to URL`: copy every blob to another store, so a clinic can move.

Blobs are copied as they are (ciphertext: no key is needed or used). Each copy is verified by
reading it back from the target and comparing its SHA-256 with the source's. Resumable: a blob
already in the target is compared the same way and skipped when equal, so an interrupted
migration is simply run again; a blob that differs stops the migration (blobs are write-once:
two different blobs under one id mean something is wrong, and nothing is overwritten).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vigie.vault.errors import VaultError
from vigie.vault.store import BlobStore, FilesystemBlobStore

Progress = Callable[[int, int], None]
_CHUNK = 1024 * 1024


@dataclass
class MigrateResult:
    blobs: int = 0
    copied: int = 0
    already_there: int = 0
    bytes_copied: int = 0


def target_store(url: str) -> BlobStore:
    """`s3://bucket/prefix` (endpoint, region and credentials from the VIGIE_S3_* settings),
    or a folder (`file:///path` or a plain path)."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise VaultError(f"{url}: expected s3://BUCKET/PREFIX")
        from vigie.vault.s3store import config_from_settings, store_from_settings

        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return store_from_settings(config_from_settings(bucket=parts.netloc, prefix=prefix))
    if parts.scheme in ("file", ""):
        return FilesystemBlobStore(Path(parts.path if parts.scheme else url))
    raise VaultError(f"{url}: the target must be s3://BUCKET/PREFIX or a folder")


def _digest(chunks: Iterator[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _chunks(store: BlobStore, blob_id: str, digest: Any = None) -> Iterator[bytes]:
    with store.open(blob_id) as handle:
        while chunk := handle.read(_CHUNK):
            if digest is not None:
                digest.update(chunk)
            yield chunk


def migrate(
    source: BlobStore, target: BlobStore, *, progress: Progress | None = None
) -> MigrateResult:
    if source.describe() == target.describe():
        raise VaultError(f"the target {target.describe()} is the store itself")
    ids = sorted(source.iter_ids())
    result = MigrateResult(blobs=len(ids))
    for index, blob_id in enumerate(ids, start=1):
        if target.exists(blob_id):
            # An earlier, interrupted run got this far: equal bytes or stop.
            if _digest(_chunks(source, blob_id)) != _digest(_chunks(target, blob_id)):
                raise VaultError(
                    f"blob {blob_id} differs between {source.describe()} and "
                    f"{target.describe()}: nothing was overwritten; find out why before "
                    "going on"
                )
            result.already_there += 1
        else:
            digest = hashlib.sha256()
            size = target.write(blob_id, _chunks(source, blob_id, digest))
            if _digest(_chunks(target, blob_id)) != (size, digest.hexdigest()):
                raise VaultError(
                    f"blob {blob_id} reads back from {target.describe()} with other bytes "
                    "than were sent: the target store is not keeping what it acknowledges"
                )
            result.copied += 1
            result.bytes_copied += size
        if progress is not None:
            progress(index, len(ids))
    return result
