"""Retention: keep the newest snapshot of each of the last N days and M weeks; drop the rest,
then the blobs no kept snapshot names.

The newest snapshot is always kept. Blobs are removed only when every remaining manifest
authenticates: a manifest we cannot read might name blobs we would otherwise delete.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vigie.backup.destination import (
    DELETING_PREFIX,
    Destination,
    DestinationError,
    snapshot_time,
)
from vigie.backup.manifest import ManifestError

# An interrupted backup's folder older than this cannot belong to a running one.
PARTIAL_GRACE_SECONDS = 6 * 3600


@dataclass
class PruneResult:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    removed_blobs: int = 0
    removed_partials: int = 0


def select_kept(snapshot_ids: list[str], keep_daily: int, keep_weekly: int) -> set[str]:
    """The snapshots retention keeps (pure: tested on its own)."""
    newest_first = sorted(snapshot_ids, reverse=True)
    kept: set[str] = set(newest_first[:1])
    days: set[object] = set()
    weeks: set[object] = set()
    for snapshot_id in newest_first:
        moment = snapshot_time(snapshot_id)
        day = moment.date()
        week = moment.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.add(day)
            kept.add(snapshot_id)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            kept.add(snapshot_id)
    return kept


def prune(
    dest_root: Path, *, keep_daily: int, keep_weekly: int, public: Ed25519PublicKey
) -> PruneResult:
    if keep_daily < 0 or keep_weekly < 0:
        raise DestinationError("--keep-daily and --keep-weekly must be 0 or more")
    dest = Destination(dest_root)
    result = PruneResult()
    with dest.locked():
        ids = dest.snapshot_ids()
        kept = select_kept(ids, keep_daily, keep_weekly)
        result.kept = sorted(kept)
        manifests = {}
        for snapshot_id in result.kept:
            try:
                manifests[snapshot_id] = dest.manifest(snapshot_id, public)
            except ManifestError as exc:
                raise DestinationError(
                    f"snapshot {snapshot_id} is kept but its manifest does not authenticate "
                    f"({exc}); nothing was pruned: run `vigie backup verify`"
                ) from None
        for snapshot_id in ids:
            if snapshot_id not in kept:
                _remove_tree(dest.snapshot_dir(snapshot_id))
                result.removed.append(snapshot_id)
        for condemned in dest.condemned():
            # Already renamed out of the listing by a prune that was interrupted: finish it.
            shutil.rmtree(condemned)
            result.removed_partials += 1
        now = time.time()
        for partial in dest.partials():
            if now - partial.stat().st_mtime >= PARTIAL_GRACE_SECONDS:
                _remove_tree(partial)
                result.removed_partials += 1
        referenced = {entry.id for m in manifests.values() for entry in m.blobs()}
        store = dest.blobs
        for blob_id in list(store.iter_ids()):
            if blob_id not in referenced:
                store.delete(blob_id)
                result.removed_blobs += 1
    return result


def _remove_tree(path: Path) -> None:
    # Renamed first: a crash mid-removal leaves a hidden folder, never a half snapshot that
    # still looks complete.
    doomed = path.with_name(f"{DELETING_PREFIX}{path.name}")
    path.rename(doomed)
    shutil.rmtree(doomed)
