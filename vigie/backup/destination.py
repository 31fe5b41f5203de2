"""The layout of a backup destination, and the lock that keeps two writers apart."""

from __future__ import annotations

import fcntl
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vigie.backup.manifest import MANIFEST_NAME, Manifest, ManifestError, load
from vigie.lib import durable
from vigie.vault.store import FilesystemBlobStore

SNAPSHOTS = "snapshots"
BLOBS = "blobs"
PARTIAL_PREFIX = ".partial-"
# A snapshot being removed by prune: renamed first, so a crash never leaves half of one.
DELETING_PREFIX = ".deleting-"
# 20261130T051502Z-3fa9c1: sortable by time, unique across two backups in one second.
SNAPSHOT_ID_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


class DestinationError(Exception):
    """The destination is unusable or busy; the message says why."""


@dataclass(frozen=True)
class Destination:
    root: Path

    @property
    def blobs(self) -> FilesystemBlobStore:
        return FilesystemBlobStore(self.root / BLOBS)

    @property
    def snapshots_dir(self) -> Path:
        return self.root / SNAPSHOTS

    def snapshot_dir(self, snapshot_id: str) -> Path:
        if not SNAPSHOT_ID_RE.fullmatch(snapshot_id):
            raise DestinationError(f"{snapshot_id!r} is not a snapshot id")
        return self.snapshots_dir / snapshot_id

    def snapshot_ids(self) -> list[str]:
        """Complete snapshots, oldest first (a partial one is never listed)."""
        try:
            names = [entry.name for entry in self.snapshots_dir.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if SNAPSHOT_ID_RE.fullmatch(n))

    def partials(self) -> list[Path]:
        return self._hidden(PARTIAL_PREFIX)

    def condemned(self) -> list[Path]:
        """Snapshots a prune had begun to remove when it was interrupted."""
        return self._hidden(DELETING_PREFIX)

    def _hidden(self, prefix: str) -> list[Path]:
        try:
            return [e for e in self.snapshots_dir.iterdir() if e.name.startswith(prefix)]
        except FileNotFoundError:
            return []

    def latest(self) -> str:
        ids = self.snapshot_ids()
        if not ids:
            raise DestinationError(f"no complete snapshot in {self.root}")
        return ids[-1]

    def manifest(self, snapshot_id: str, public: Ed25519PublicKey | None) -> Manifest:
        return load(self.snapshot_dir(snapshot_id) / MANIFEST_NAME, public)

    def manifests(self, public: Ed25519PublicKey | None) -> Iterator[tuple[str, Manifest]]:
        """Every complete snapshot whose manifest loads (and authenticates, given a key)."""
        for snapshot_id in self.snapshot_ids():
            try:
                yield snapshot_id, self.manifest(snapshot_id, public)
            except ManifestError:
                continue

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time: two backups (or a backup and a prune) must not interleave."""
        try:
            durable.make_private_dir(self.root)
        except OSError as exc:
            raise DestinationError(f"cannot create {self.root}: {exc.strerror}") from None
        self._make_private()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, durable.PRIVATE_FILE_MODE)  # one made before, under another umask
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DestinationError(
                    f"another backup or prune is writing to {self.root}; try again later"
                ) from None
            yield
        finally:
            os.close(fd)

    def _make_private(self) -> None:
        """DEST itself 0700 when it is ours: an existing folder (or a mount point) may have
        come with 0755. One owned by someone else (root's mount point) is left as it is:
        what Vigie writes inside it is 0700 and 0600 anyway."""
        st = self.root.stat()
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != durable.PRIVATE_DIR_MODE:
            self.root.chmod(durable.PRIVATE_DIR_MODE)


def snapshot_time(snapshot_id: str) -> datetime:
    from datetime import UTC

    return datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
