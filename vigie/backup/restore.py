"""`vigie backup restore DEST --keys FILE`: rebuild an installation, then prove it.

Only into an empty VIGIE_HOME (and an empty database): a restore over a live installation
would mix two histories. While it runs, a `RESTORING` marker in VIGIE_HOME makes every
other `vigie` command (the web server first) refuse to start, so a half-restored portal is
never served. The marker goes only once everything restored has been verified.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from vigie import vault
from vigie.backup import database
from vigie.backup.create import file_entry, hashing_chunks
from vigie.backup.destination import Destination
from vigie.backup.keys import KeyBundle, install
from vigie.backup.manifest import BlobEntry, Manifest
from vigie.backup.parallel import THREADS, check_each, staged
from vigie.backup.sealed import SealedFileError
from vigie.lib import durable
from vigie.vault import layout

MARKER = "RESTORING"

Progress = Callable[[str, int, int], None]


class RestoreError(Exception):
    """The restore was refused or failed; the message says why and what state is left."""


@dataclass
class RestoreResult:
    snapshot_id: str
    documents: int = 0
    pending: int = 0
    blobs: int = 0
    bytes: int = 0
    audit_events: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def marker_path() -> Path:
    return Path(settings.VIGIE_HOME) / MARKER


def _not_empty(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def refuse_unless_empty() -> None:
    misplaced = layout.misplaced_keys()
    if misplaced:
        # The keys are installed by the restore: never into the data tree they protect.
        raise RestoreError(layout.refusal_message(misplaced) + "; nothing was changed")
    home = Path(settings.VIGIE_HOME)
    for label, path in (
        ("VIGIE_HOME", home),
        ("the blob store", Path(settings.VIGIE_BLOB_DIR)),
        ("the keys folder (VIGIE_KEYS_DIR)", Path(settings.VIGIE_KEYS_DIR)),
    ):
        if _not_empty(path):
            raise RestoreError(
                f"{label} {path} is not empty: restore only into an empty VIGIE_HOME "
                "(move the old one aside first; nothing was changed)"
            )
    if settings.VIGIE_BLOB_STORE != "file":
        store = vault.get_blob_store()
        try:
            holds_blobs = next(iter(store.iter_ids()), None) is not None
        except vault.VaultError as exc:
            raise RestoreError(f"cannot reach the blob store to restore into: {exc}") from None
        if holds_blobs:
            raise RestoreError(
                f"the blob store {store.describe()} is not empty: restore only into an empty "
                "bucket or prefix (nothing was changed)"
            )
    try:
        occupied = database.target_is_empty()
    except Exception as exc:  # an unreachable server must be named, not a traceback
        raise RestoreError(f"cannot reach the database to restore into: {exc}") from None
    if occupied:
        raise RestoreError(f"{occupied}: restore only into an empty database")


def restore(
    dest_root: Path,
    bundle: KeyBundle,
    *,
    snapshot_id: str | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    started = time.perf_counter()
    dest = Destination(dest_root)
    snapshot_id = snapshot_id or dest.latest()
    folder = dest.snapshot_dir(snapshot_id)
    public = bundle.public_key()
    manifest = dest.manifest(snapshot_id, public)  # ManifestError: not this installation's
    refuse_unless_empty()
    _check_files(folder, manifest)
    keyring = bundle.open_keyring(dest_root)
    _check_sealed(folder, manifest, keyring)
    result = RestoreResult(snapshot_id)

    home = Path(settings.VIGIE_HOME)
    durable.make_private_dir(home)
    marker = marker_path()
    marker.write_text(f"restore of snapshot {snapshot_id} from {dest_root} in progress\n")
    durable.fsync_dir(home)

    install(bundle)
    _restore_blobs(dest, manifest, result, progress)
    try:
        database.restore(
            lambda target: manifest.extract("database", folder, target, keyring),
            manifest.engine,
        )
        checkpoint_target = Path(settings.VIGIE_AUDIT_CHECKPOINT_FILE)
        durable.make_private_dir(checkpoint_target.parent)
        manifest.extract("checkpoints", folder, checkpoint_target, keyring)
        policy_target = Path(settings.VIGIE_POLICY_FILE)
        if "policy" in manifest.body["files"] and not policy_target.exists():
            durable.make_private_dir(policy_target.parent)
            manifest.extract("policy", folder, policy_target, keyring)
    except (database.DatabaseBackupError, SealedFileError) as exc:
        raise RestoreError(
            f"{exc}; VIGIE_HOME is left incomplete with its {MARKER} marker"
        ) from None

    _verify_restored(result, manifest, progress)
    result.seconds = time.perf_counter() - started
    if not result.problems:
        marker.unlink()
        durable.fsync_dir(home)
    return result


def _check_files(folder: Path, manifest: Manifest) -> None:
    """Refuse a snapshot whose files do not match the signed manifest, before writing."""
    for role, entry in manifest.body["files"].items():
        path = folder / str(entry.get("name", ""))
        if not path.is_file():
            raise RestoreError(f"{role} file {path} is missing; nothing was restored")
        actual = file_entry(path)
        if actual["sha256"] != entry.get("sha256") or actual["size"] != entry.get("size"):
            raise RestoreError(
                f"{role} file {path} does not match the signed manifest (swapped or altered); "
                "nothing was restored: try an older snapshot"
            )


def _check_sealed(folder: Path, manifest: Manifest, keyring: vault.Keyring) -> None:
    """Refuse, before writing anything, a snapshot whose sealed files the keys do not open:
    the KEK each one names must be in the export (an export older than the backup, or
    another installation's, lacks it)."""
    for role in manifest.body["files"]:
        entry = manifest.sealed(role)
        if entry is not None and entry.kek_id not in keyring.key_ids:
            raise RestoreError(
                f"the {role} file is sealed with key {entry.kek_id}, which the keys export "
                "does not hold (an export made before that key, or another installation's); "
                "nothing was restored: use a newer `vigie keys export`"
            )


def _restore_blob(
    source: vault.FilesystemBlobStore, target: vault.BlobStore, entry: BlobEntry
) -> int:
    digest = hashlib.sha256()
    try:
        size = target.write(entry.id, hashing_chunks(source.path_for(entry.id), digest))
    except FileNotFoundError:
        raise RestoreError(
            f"blob {entry.id} is missing from the backup; VIGIE_HOME is left incomplete "
            f"with its {MARKER} marker: restore an older snapshot into a new VIGIE_HOME"
        ) from None
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise RestoreError(
            f"blob {entry.id} in the backup was changed after the backup; VIGIE_HOME is "
            f"left incomplete with its {MARKER} marker: restore an older snapshot"
        )
    return size


def _restore_blobs(
    dest: Destination, manifest: Manifest, result: RestoreResult, progress: Progress | None
) -> None:
    source = dest.blobs
    target = vault.get_blob_store()
    entries = manifest.blobs()
    # Threads: each copy waits on its own fsync; hashing and file I/O release the GIL.
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        sizes = pool.map(lambda entry: _restore_blob(source, target, entry), entries)
        for index, size in enumerate(sizes, start=1):
            result.blobs += 1
            result.bytes += size
            if progress is not None:
                progress("blobs", index, len(entries))


def _verify_restored(result: RestoreResult, manifest: Manifest, progress: Progress | None) -> None:
    """Check the restored installation through its own settings: keyring, store, database."""
    from vigie.audit.verify import verify as verify_chain
    from vigie.records.content import SealedRow
    from vigie.records.content import verify as verify_content
    from vigie.records.models import Document, PendingDocument

    vault.get_keyring().reload()
    documents = list(Document.objects.order_by("pk"))
    pending = list(PendingDocument.objects.order_by("pk"))
    result.documents, result.pending = len(documents), len(pending)
    rows: list[SealedRow] = [*documents, *pending]

    def check(row: SealedRow) -> str | None:
        try:
            verify_content(row)
        except vault.VaultError as exc:
            return f"document {row.id} does not decrypt: {exc}"
        return None

    check_each(rows, check, result.problems, staged(progress, "documents"))
    chain = verify_chain(jobs=min(os.cpu_count() or 1, 4))
    result.audit_events = chain.checked
    result.problems.extend(f"audit chain: {problem}" for problem in chain.problems)
    expected_seq = int((manifest.body.get("audit") or {}).get("head_seq", 0))
    if chain.last_seq != expected_seq:
        result.problems.append(
            f"audit chain ends at seq {chain.last_seq}, the manifest says {expected_seq}"
        )
