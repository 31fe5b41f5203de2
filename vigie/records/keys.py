"""Key rotation: re-wrap every data key under a new key-encryption key, content untouched.

Rotation must never make a document unreadable, even for a process reading concurrently:
1. the new key is added to the keyring file (durably) before any row points to it, and
   readers that meet an unknown key id reload the keyring;
2. each row is switched with a conditional UPDATE (only if it still holds the wrapped key we
   read), so a concurrent rotation or restore is never overwritten with stale data;
3. old keys stay in the keyring until `remove_key`, which refuses while any row uses them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count

from vigie import vault
from vigie.accounts.models import TotpSeed
from vigie.lib import durable
from vigie.records.content import verify
from vigie.records.models import Document, PendingDocument, SealedResults
from vigie.vault import layout
from vigie.vault.kek_store import Keyring

Progress = Callable[[int, int], None]
_BATCH = 500
# Every table that holds wrapped data keys: documents, those still to be reconciled, and
# the sealed authenticator seeds and lab results (same envelope, their id is the vault label).
_WRAPPED: tuple[
    type[Document] | type[PendingDocument] | type[TotpSeed] | type[SealedResults], ...
] = (
    Document,
    PendingDocument,
    TotpSeed,
    SealedResults,
)


@dataclass(frozen=True)
class RotationResult:
    new_kek_id: str
    rewrapped: int


def key_usage() -> dict[str, int]:
    """How many data keys each key-encryption key wraps."""
    usage: dict[str, int] = {}
    for model in _WRAPPED:
        rows = model.objects.values("kek_id").annotate(n=Count("id")).order_by("kek_id")
        for row in rows:
            usage[row["kek_id"]] = usage.get(row["kek_id"], 0) + row["n"]
    return dict(sorted(usage.items()))


def rewrap_all(keyring: Keyring | None = None, progress: Progress | None = None) -> int:
    """Re-wrap every data key not yet under the active key. Safe to re-run after a crash."""
    ring = keyring or vault.get_keyring()
    total = sum(m.objects.exclude(kek_id=ring.active_id).count() for m in _WRAPPED)
    done = 0
    # Loop until nothing is left: documents ingested by a process that had not yet seen the
    # new key are picked up by the next pass. The active key is read again on every pass (the
    # keyring notices when another process rotated), so a concurrent rotation cannot leave
    # this loop chasing a key that is no longer active.
    for model in _WRAPPED:
        while True:
            stale = model.objects.exclude(kek_id=ring.active_id)
            batch = list(stale.order_by("pk").values_list("pk", "kek_id", "wrapped_key")[:_BATCH])
            if not batch:
                break
            for pk, kek_id, wrapped in batch:
                new_kek, new_wrapped = vault.rewrap(pk, kek_id, bytes(wrapped), keyring=ring)
                model.objects.filter(pk=pk, kek_id=kek_id, wrapped_key=wrapped).update(
                    kek_id=new_kek, wrapped_key=new_wrapped
                )
                done += 1
                if progress is not None:
                    progress(done, max(total, done))
    return done


def rotate(keyring: Keyring | None = None, progress: Progress | None = None) -> RotationResult:
    ring = keyring or vault.get_keyring()
    new_id = ring.add_key()
    return RotationResult(new_kek_id=new_id, rewrapped=rewrap_all(ring, progress))


class KeyInUse(vault.KeyringError):
    pass


def remove_key(kek_id: str, keyring: Keyring | None = None) -> None:
    ring = keyring or vault.get_keyring()
    in_use = sum(m.objects.filter(kek_id=kek_id).count() for m in _WRAPPED)
    if in_use:
        raise KeyInUse(
            f"key {kek_id} still wraps {in_use} data key(s); run `vigie keys rewrap` first"
        )
    ring.remove_key(kek_id)


class KeyMoveError(vault.VaultError):
    """`vigie keys move` refused or stopped; the message says why and what is left where."""


@dataclass(frozen=True)
class MoveResult:
    source: Path
    dest: Path
    copied: list[str]  # file names written to dest by this run
    removed: list[str]  # file names removed from the source by this run
    verified_document: str | None  # the document decrypted with the moved keyring


def move_source(dest: Path) -> Path | None:
    """Where `vigie keys move` takes the keys from when not told: the configured keys folder,
    else the old layout's VIGIE_HOME/keyring, whichever holds key files and is not `dest`."""
    candidates = [
        Path(settings.VIGIE_KEYS_DIR),
        Path(settings.VIGIE_HOME) / layout.LEGACY_FOLDER_NAME,
    ]
    for folder in candidates:
        if folder.resolve() == dest.resolve():
            continue
        if any(os.path.lexists(folder / name) for name in layout.KEY_FILE_NAMES):
            return folder
    return None


def move_keys(dest: Path, source: Path | None = None) -> MoveResult:
    """Move the key files from `source` to the keys folder `dest`, out of the data tree.

    Safe to interrupt and to run again: (1) each file is copied to `dest` durably (written
    under a temporary name, fsynced, published with link(2), folder fsynced), an identical
    file already there is accepted and a different one refused; (2) the keyring at `dest` must
    decrypt a document (hashed against its row) before (3) anything is removed from `source`.
    Until (3) ends, both copies exist and preflight refuses to start while keys remain in the
    data tree; a second run finishes what the first began.
    """
    dest = dest.absolute()
    inside = layout.is_inside_data(dest)
    if inside is not None:
        raise KeyMoveError(
            f"{dest} is inside {inside[0]} {inside[1]}: the keys must leave the data tree, "
            "choose a folder outside it (e.g. /etc/vigie/keys)"
        )
    if settings.VIGIE_KEYS_SOURCE == layout.SOURCE_CREDENTIALS:
        raise KeyMoveError(
            "the keys come from systemd credentials: there is nothing to move "
            "(run `vigie keys move` without $CREDENTIALS_DIRECTORY for a keys folder)"
        )
    if source is None:
        source = move_source(dest)
    if source is None:
        if all(os.path.lexists(dest / n) for n in (layout.KEYRING_NAME, layout.SIGNING_KEY_NAME)):
            return MoveResult(dest, dest, [], [], None)  # a finished move, run again
        raise KeyMoveError(
            f"no key files to move: none in {settings.VIGIE_KEYS_DIR} or the "
            f"old place {Path(settings.VIGIE_HOME) / layout.LEGACY_FOLDER_NAME}"
        )
    source = source.absolute()
    if source.resolve() == dest.resolve():
        raise KeyMoveError(f"{dest} is where the keys already are")
    names = [n for n in layout.KEY_FILE_NAMES if os.path.lexists(source / n)]
    pending = list(names)
    layout.make_keys_dir(dest)
    copied: list[str] = []
    for name in pending:
        content = _read_key_file(source / name)
        target = dest / name
        if os.path.lexists(target):
            if _read_key_file(target) != content:
                raise KeyMoveError(
                    f"{target} already exists and differs from {source / name}: refusing to "
                    "replace a key; nothing was removed (compare them, keep the right one)"
                )
            continue  # copied by an earlier, interrupted run
        try:
            durable.write_new(target, [content])
        except OSError as exc:
            raise KeyMoveError(f"cannot write {target}: {exc.strerror or exc}") from None
        copied.append(name)
    verified = verify_keys(dest)
    removed: list[str] = []
    for name in pending:
        (source / name).unlink(missing_ok=True)
        removed.append(name)
    if removed:
        durable.fsync_dir(source)
    # The old layout's folder goes with its last key; VIGIE_HOME or a shared folder stays.
    if source.name == layout.LEGACY_FOLDER_NAME and not any(source.iterdir()):
        source.rmdir()
        durable.fsync_dir(source.parent)
    return MoveResult(source, dest, copied, removed, verified)


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMoveError(f"cannot read {path}: {exc.strerror or exc}") from None


def verify_keys(folder: Path) -> str | None:
    """Prove the keyring in `folder` opens this installation's documents: decrypt one whole
    document (bytes hashed against its row, then discarded). Returns its id; None when there
    are no documents yet, after a wrap/unwrap round trip with the active key instead."""
    try:
        ring = Keyring.load(folder / layout.KEYRING_NAME)
    except vault.KeyringError as exc:
        raise KeyMoveError(
            f"the moved keyring does not load ({exc}); nothing was removed"
        ) from None
    # Only the columns every schema has had: the move runs before `vigie migrate` on upgrade
    # (preflight refuses migrate while keys lie in the data tree).
    try:
        document = (
            Document.objects.only("id", "kek_id", "wrapped_key", "size", "sha256")
            .order_by("pk")
            .first()
        )
    except DatabaseError as exc:
        raise KeyMoveError(
            f"cannot read a document to verify the moved keys ({exc}); nothing was removed"
        ) from None
    try:
        if document is None:
            probe = "keys-move-verification"
            kek_id, wrapped = ring.wrap(b"\0" * 32, probe)
            ring.unwrap(kek_id, wrapped, probe)
            return None
        verify(document, keyring=ring)
    except vault.VaultError as exc:
        raise KeyMoveError(
            f"the keyring in {folder} does not decrypt document {document.pk if document else ''}"
            f" ({exc}); nothing was removed"
        ) from None
    return str(document.pk)
