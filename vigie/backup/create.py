"""`vigie backup create DEST`: an online, consistent, incremental, signed snapshot.

Order matters:
1. sign the audit head now, so the snapshot's last events are covered by a signature;
2. snapshot the database (one point in time; see `database`), sealed on its way to DEST;
3. seal the checkpoint file, keeping the lines up to the snapshot's head (a checkpoint signed
   after the snapshot would make the restored log look truncated), and the exposure policy;
4. copy every blob the snapshot's rows name, unless DEST has it already (blobs are
   write-once: same id, same bytes), hashing the ciphertext on the way;
5. sign the manifest, then give the snapshot folder its final name: a crash at any earlier
   point leaves a `.partial-…` folder that is never listed as a snapshot.

Nothing but ciphertext reaches DEST: blobs are copied as they are (sealed at ingest), every
other file is sealed under the keyring (see `sealed`), and the manifest names random ids,
sizes and hashes only. Every file is 0600 and every folder 0700, whatever the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from vigie import vault
from vigie.audit import checkpoints
from vigie.backup import database, sealed
from vigie.backup.destination import PARTIAL_PREFIX, Destination, DestinationError
from vigie.backup.manifest import FORMAT, MANIFEST_NAME, sign
from vigie.backup.parallel import THREADS
from vigie.lib import durable

CHECKPOINTS_FILE = "checkpoints.jsonl"
POLICY_FILE = "vigie-policy.toml"
_CHUNK = 1024 * 1024


Progress = Callable[[int, int], None]


class BackupError(Exception):
    """The backup could not be completed; nothing was published. The message says why."""


@dataclass(frozen=True)
class CreateResult:
    snapshot_id: str
    path: Path
    documents: int
    pending: int
    blobs: int
    copied: int
    reused: int
    bytes_copied: int
    audit_seq: int
    seconds: float


def file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"name": path.name, "size": size, "sha256": digest.hexdigest()}


def hashing_chunks(path: Path, digest: Any) -> Iterator[bytes]:
    """The file's bytes in chunks, fed to `digest` on the way (copy and hash in one read)."""
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            yield chunk


def hashing_blob(store: vault.BlobStore, blob_id: str, digest: Any) -> Iterator[bytes]:
    """The blob's bytes from any store (a folder, S3), fed to `digest` on the way."""
    with store.open(blob_id) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            yield chunk


def _copy_blob(
    source: vault.BlobStore,
    target: vault.FilesystemBlobStore,
    blob_id: str,
) -> tuple[int, str]:
    digest = hashlib.sha256()
    try:
        size = target.write(blob_id, hashing_blob(source, blob_id, digest))
    except vault.BlobMissing:
        raise BackupError(
            f"document {blob_id} has a row but no blob in {source.describe()}: "
            "run `vigie vault fsck` and restore that document from an older backup"
        ) from None
    return size, digest.hexdigest()


def _known_blobs(dest: Destination) -> dict[str, tuple[int, str]]:
    """Blobs earlier snapshots already hold, as their signed manifests describe them."""
    from vigie.audit.checkpoints import load_signing_key

    public = load_signing_key().public_key()
    known: dict[str, tuple[int, str]] = {}
    for _snapshot_id, manifest in dest.manifests(public):
        for entry in manifest.blobs():
            known[entry.id] = (entry.size, entry.sha256)
    return known


def _checkpoints_up_to(up_to_seq: int) -> tuple[bytes, dict[str, Any] | None]:
    """The signed checkpoints up to the snapshot's head, and the latest one."""
    lines = []
    latest: dict[str, Any] | None = None
    try:
        content = checkpoints.checkpoint_path().read_bytes()
    except FileNotFoundError:
        content = b""
    for raw in content.split(b"\n"):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            seq = int(item["seq"])
        except (ValueError, KeyError, TypeError):
            lines.append(raw)  # kept as found: verify reports malformed lines
            continue
        if seq <= up_to_seq:
            lines.append(raw)
            latest = item
    return b"".join(line + b"\n" for line in lines), latest


def _sealed_entry(path: Path, entry: sealed.SealedEntry) -> dict[str, Any]:
    # size and sha256 are the ciphertext's (checked before opening anything), "sealed" says
    # how to open it and what the plaintext hashes to.
    return {**file_entry(path), "sealed": entry.to_json()}


def create(
    dest_root: Path,
    *,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> CreateResult:
    started = time.perf_counter()
    dest = Destination(dest_root)
    store = vault.get_blob_store()
    if dest_root.resolve().is_relative_to(Path(settings.VIGIE_HOME).resolve()):
        raise BackupError(
            f"{dest_root} is inside VIGIE_HOME: a backup must live on another disk or server"
        )
    with dest.locked():
        moment = now or datetime.now(UTC)
        snapshot_id = f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        partial = dest.snapshots_dir / f"{PARTIAL_PREFIX}{snapshot_id}"
        durable.make_private_dir(partial)
        try:
            result = _fill(dest, partial, snapshot_id, store, moment, progress, started)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        final = dest.snapshot_dir(snapshot_id)
        partial.rename(final)
        durable.fsync_dir(dest.snapshots_dir)
    return result


def _fill(
    dest: Destination,
    partial: Path,
    snapshot_id: str,
    store: vault.BlobStore,
    moment: datetime,
    progress: Progress | None,
    started: float,
) -> CreateResult:
    signing_key = checkpoints.load_signing_key()
    try:
        checkpoints.write_checkpoint(force=True)
    except checkpoints.CheckpointError as exc:
        raise BackupError(f"cannot sign the audit head before the backup: {exc}") from None
    files, facts, latest_checkpoint = _seal_files(partial, snapshot_id)
    copy = _copy_blobs(dest, store, facts.blob_ids, progress)

    from vigie import __version__

    body: dict[str, Any] = {
        "format": FORMAT,
        "id": snapshot_id,
        "created": moment.isoformat(),
        "vigie_version": __version__,
        "engine": database.engine(),
        "files": files,
        "documents": facts.documents,
        "pending": facts.pending,
        "migrations": facts.migrations,
        "audit": {
            "head_seq": facts.audit_seq,
            "head_hash": facts.audit_hash,
            "latest_checkpoint": latest_checkpoint,
        },
        "keyring": {"kek_ids": vault.get_keyring().key_ids},
        "blobs": [[b, *copy.entries[b]] for b in sorted(copy.entries)],
    }
    manifest_path = partial / MANIFEST_NAME
    fd = durable.create_private(manifest_path)
    try:
        durable.write_all(fd, sign(body, signing_key))
        os.fsync(fd)
    finally:
        os.close(fd)
    durable.fsync_dir(partial)
    return CreateResult(
        snapshot_id=snapshot_id,
        path=dest.snapshot_dir(snapshot_id),
        documents=facts.documents,
        pending=facts.pending,
        blobs=len(copy.entries),
        copied=copy.copied,
        reused=copy.reused,
        bytes_copied=copy.bytes_copied,
        audit_seq=facts.audit_seq,
        seconds=time.perf_counter() - started,
    )


def _seal_files(
    partial: Path, snapshot_id: str
) -> tuple[dict[str, dict[str, Any]], database.SnapshotFacts, dict[str, Any] | None]:
    """Seal the database snapshot, the audit checkpoints up to it and the exposure policy
    into `partial`: their manifest entries, the snapshot's facts, the latest checkpoint."""
    keyring = vault.get_keyring()
    files: dict[str, dict[str, Any]] = {}

    def seal_database(name: str, stream: BinaryIO) -> None:
        path = partial / f"{name}{sealed.SUFFIX}"
        files["database"] = _sealed_entry(
            path, sealed.seal(snapshot_id, "database", stream, path, keyring)
        )

    try:
        facts = database.snapshot(seal_database)
    except database.DatabaseBackupError as exc:
        raise BackupError(str(exc)) from None
    except vault.VaultError as exc:
        raise BackupError(f"cannot seal the database snapshot: {exc}") from None
    content, latest_checkpoint = _checkpoints_up_to(facts.audit_seq)
    path = partial / f"{CHECKPOINTS_FILE}{sealed.SUFFIX}"
    files["checkpoints"] = _sealed_entry(
        path, sealed.seal_bytes(snapshot_id, "checkpoints", content, path, keyring)
    )
    policy = Path(settings.VIGIE_POLICY_FILE)
    if policy.is_file():
        path = partial / f"{POLICY_FILE}{sealed.SUFFIX}"
        files["policy"] = _sealed_entry(
            path, sealed.seal_bytes(snapshot_id, "policy", policy.read_bytes(), path, keyring)
        )
    return files, facts, latest_checkpoint


@dataclass
class _BlobCopy:
    entries: dict[str, tuple[int, str]]  # blob id -> (size, digest), reused or copied
    copied: int
    reused: int
    bytes_copied: int


def _copy_blobs(
    dest: Destination,
    store: vault.BlobStore,
    blob_ids: list[str],
    progress: Progress | None,
) -> _BlobCopy:
    """Copy into DEST every blob a signed manifest there does not already vouch for."""
    known = _known_blobs(dest)
    target = dest.blobs
    entries: dict[str, tuple[int, str]] = {}
    to_copy: list[str] = []
    for blob_id in blob_ids:
        previous = known.get(blob_id)
        if previous is not None and target.exists(blob_id):
            entries[blob_id] = previous
        else:
            if target.exists(blob_id):
                # In DEST but in no signed manifest (an interrupted backup, or planted):
                # never trusted, replaced by a fresh copy.
                target.path_for(blob_id).unlink()
            to_copy.append(blob_id)
    reused = len(entries)
    total = len(blob_ids)
    done = reused
    copied_bytes = 0
    if progress is not None:
        progress(done, total)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for blob_id, (size, digest) in zip(
            to_copy,
            pool.map(lambda b: _copy_blob(store, target, b), to_copy),
            strict=True,
        ):
            entries[blob_id] = (size, digest)
            copied_bytes += size
            done += 1
            if progress is not None:
                progress(done, total)
    return _BlobCopy(entries, copied=len(to_copy), reused=reused, bytes_copied=copied_bytes)


__all__ = ["BackupError", "CreateResult", "DestinationError", "create"]
