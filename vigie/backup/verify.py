"""`vigie backup verify DEST`: prove a snapshot restores to what it claims, with the keys.

Checked, in order, each problem named precisely:
1. the manifest's signature, with the public key of the keys export or the installation
   (never a key found in the backup);
2. the database and checkpoint files against the manifest's hashes (a swapped database),
   then their decryption (AES-GCM) to the plaintext hashes the manifest signed;
3. every blob: present, of the recorded size and ciphertext SHA-256 (changed, removed);
4. the snapshot's rows and the manifest's blobs name the same documents;
5. every document decrypts (AES-GCM authenticates each chunk) to its recorded SHA-256;
6. the audit chain, against the snapshot's signed checkpoints, and its head against the
   manifest's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vigie import vault
from vigie.audit.verify import verify as verify_chain
from vigie.backup import database
from vigie.backup.create import file_entry
from vigie.backup.destination import Destination, DestinationError
from vigie.backup.manifest import BlobEntry, Manifest, ManifestError
from vigie.backup.parallel import check_each, staged
from vigie.backup.sealed import SealedFileError
from vigie.records.content import SealedRow
from vigie.records.content import verify as verify_content

# (stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass
class VerifyReport:
    snapshot_id: str = ""
    engine: str = ""
    documents: int = 0
    pending: int = 0
    blobs: int = 0
    bytes: int = 0
    audit_events: int = 0
    audit_checkpoints: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    # Not failures: what the clinic should still act on.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_files(folder: Path, manifest: Manifest, report: VerifyReport) -> bool:
    """False when the database cannot be trusted enough to open."""
    trusted = True
    for role, entry in sorted(manifest.body["files"].items()):
        path = folder / str(entry.get("name", ""))
        if not path.is_file():
            report.problems.append(f"{role} file {path.name} is missing from the snapshot")
            trusted = trusted and role != "database"
            continue
        actual = file_entry(path)
        if actual["sha256"] != entry.get("sha256") or actual["size"] != entry.get("size"):
            what = (
                "the database was swapped or altered"
                if role == "database"
                else "it was altered after the backup"
            )
            report.problems.append(
                f"{role} file {path.name} does not match the manifest's SHA-256 ({what})"
            )
            trusted = trusted and role != "database"
    return trusted


def _check_other_files(
    folder: Path, manifest: Manifest, keyring: vault.Keyring, report: VerifyReport
) -> None:
    """Files that no later step opens (the policy) must decrypt too: restore needs them."""
    for role in sorted(set(manifest.body["files"]) - {"database", "checkpoints"}):
        with tempfile.TemporaryDirectory(prefix="vigie-verify-") as scratch:
            try:
                manifest.extract(role, folder, Path(scratch) / role, keyring)
            except SealedFileError as exc:
                report.problems.append(str(exc))


def verify_snapshot(
    dest_root: Path,
    *,
    public_key: Ed25519PublicKey,
    keyring: vault.Keyring,
    snapshot_id: str | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    started = time.perf_counter()
    report = VerifyReport()
    dest = Destination(dest_root)
    try:
        snapshot_id = snapshot_id or dest.latest()
        folder = dest.snapshot_dir(snapshot_id)
    except DestinationError as exc:
        report.problems.append(str(exc))
        return report
    report.snapshot_id = snapshot_id
    try:
        manifest = dest.manifest(snapshot_id, public_key)
    except ManifestError as exc:
        report.problems.append(f"manifest: {exc}")
        return report
    report.engine = manifest.engine
    if not manifest.encrypted:
        report.warnings.append(
            f"snapshot {snapshot_id} predates encrypted backups: its database is in clear on "
            "the backup disk; once a newer snapshot verifies, prune this one "
            "(`vigie backup prune`)"
        )
    database_trusted = _check_files(folder, manifest, report)
    _check_other_files(folder, manifest, keyring, report)

    store = dest.blobs
    entries = manifest.blobs()
    report.blobs = len(entries)
    good_blobs: set[str] = set()

    def check_blob(entry: BlobEntry) -> str | None:
        try:
            path = store.path_for(entry.id)
        except vault.VaultError as exc:
            return f"manifest lists an invalid blob id: {exc}"
        try:
            actual = file_entry(path)
        except FileNotFoundError:
            return f"blob {entry.id} is missing from {store.root}"
        size = actual["size"]
        if size != entry.size or actual["sha256"] != entry.sha256:
            return (
                f"blob {entry.id} was changed after the backup "
                f"(size {size}, expected {entry.size}; SHA-256 differs from the manifest)"
            )
        return None

    passed = check_each(entries, check_blob, report.problems, staged(progress, "blobs"))
    for entry, ok in zip(entries, passed, strict=True):
        if ok:
            good_blobs.add(entry.id)
            report.bytes += entry.size

    if not database_trusted:
        report.problems.append(
            "documents and audit chain not checked: the database file cannot be trusted"
        )
        report.seconds = time.perf_counter() - started
        return report
    try:
        with database.attached(
            lambda target: manifest.extract("database", folder, target, keyring),
            manifest.engine,
        ) as alias:
            _check_rows(alias, manifest, store, keyring, good_blobs, report, progress)
            _check_audit(alias, folder, manifest, public_key, keyring, report, progress)
    except (database.DatabaseBackupError, SealedFileError) as exc:
        report.problems.append(f"database: {exc}")
    report.seconds = time.perf_counter() - started
    return report


def _check_rows(
    alias: str,
    manifest: Manifest,
    store: vault.FilesystemBlobStore,
    keyring: vault.Keyring,
    good_blobs: set[str],
    report: VerifyReport,
    progress: Progress | None,
) -> None:
    from vigie.records.models import Document, PendingDocument

    fields = ("id", "kek_id", "wrapped_key", "size", "sha256")
    rows = list(Document.objects.using(alias).only(*fields).order_by("pk"))
    pending = list(PendingDocument.objects.using(alias).only(*fields).order_by("pk"))
    report.documents, report.pending = len(rows), len(pending)
    listed = {entry.id for entry in manifest.blobs()}
    for kind, count in (("documents", len(rows)), ("pending", len(pending))):
        if manifest.body.get(kind) != count:
            report.problems.append(
                f"the database holds {count} {kind} rows but the manifest says "
                f"{manifest.body.get(kind)} (the database does not belong to this manifest)"
            )
    everything: list[SealedRow] = [*rows, *pending]
    row_ids = {row.id for row in everything}

    def check_row(row: SealedRow) -> str | None:
        if row.id not in listed:
            return f"document {row.id} has a row but no blob in the manifest"
        if row.id in good_blobs:
            try:
                verify_content(row, store=store, keyring=keyring)
            except vault.VaultError as exc:
                return f"document {row.id} does not decrypt: {exc}"
        return None

    check_each(everything, check_row, report.problems, staged(progress, "documents"))
    for blob_id in sorted(listed - row_ids):
        report.problems.append(
            f"blob {blob_id} is in the manifest but no row of the database names it"
        )


def _check_audit(
    alias: str,
    folder: Path,
    manifest: Manifest,
    public_key: Ed25519PublicKey,
    keyring: vault.Keyring,
    report: VerifyReport,
    progress: Progress | None,
) -> None:
    expected = manifest.body.get("audit") or {}
    total = int(expected.get("head_seq", 0))
    seen = 0

    def advance(count: int) -> None:
        nonlocal seen
        seen += count
        if progress is not None:
            progress("audit", seen, total)

    with tempfile.TemporaryDirectory(prefix="vigie-verify-") as scratch:
        checkpoint_file = Path(scratch) / "checkpoints.jsonl"
        try:
            manifest.extract("checkpoints", folder, checkpoint_file, keyring)
        except SealedFileError as exc:
            report.problems.append(f"audit chain not checked: {exc}")
            return
        result = verify_chain(
            checkpoint_file=checkpoint_file,
            using=alias,
            public_key=public_key,
            progress=advance,
        )
    report.audit_events = result.checked
    report.audit_checkpoints = result.checkpoints
    for problem in result.problems:
        report.problems.append(f"audit chain: {problem}")
    from vigie.audit.models import AuditHead

    head = AuditHead.objects.using(alias).filter(pk=1).values_list("seq", "hash").first()
    if head is not None and (head[0], head[1]) != (total, expected.get("head_hash")):
        report.problems.append(
            f"audit head of the database (seq {head[0]}) is not the manifest's (seq {total})"
        )
    if total and result.checkpoints == 0:
        report.problems.append("audit chain: the snapshot holds no signed checkpoint")
