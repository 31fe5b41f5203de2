"""`SealGroup`: many blobs sealed, then made durable together; the same envelope as `seal`."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from vigie import vault
from vigie.vault.errors import DocumentTooLarge, VaultError
from vigie.vault.group import SealGroup
from vigie.vault.kek_store import Keyring
from vigie.vault.store import FilesystemBlobStore

MARKER = b"PATIENT DUPONT Jeanne -- hemoglobin 13.2 g/dL\n"


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n:030d}" for n in range(count)]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_it_seals_a_round_that_opens_like_any_document(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    group = SealGroup(store, keyring, chunk_size=4096)
    contents = {blob_id: MARKER * (n + 1) * 300 for n, blob_id in enumerate(_ids("Ab", 5))}
    rows = {
        blob_id: group.seal(blob_id, data, max_size=1 << 20) for blob_id, data in contents.items()
    }
    with ThreadPoolExecutor(4) as executor:
        group.sync(executor)
    group.close()
    for blob_id, (kek_id, wrapped, size, _sha256) in rows.items():
        assert size == len(contents[blob_id])
        with vault.open(blob_id, kek_id, wrapped, store=store, keyring=keyring) as chunks:
            assert b"".join(chunks) == contents[blob_id]
        path = store.path_for(blob_id)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # Ciphertext only on disk.
        assert MARKER not in path.read_bytes()
    # One shard folder for the round (ids sharing their first two characters), no temp file.
    assert {Path(f).parent.name for f in _files(store.root)} == {"Ab"}
    assert all(f.endswith(".blob") for f in _files(store.root))
    assert stat.S_IMODE((store.root / "Ab").stat().st_mode) == 0o700


def test_discarded_and_refused_blobs_leave_nothing(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    group = SealGroup(store, keyring, chunk_size=4096)
    first, second = _ids("Cd", 2)
    group.seal(first, MARKER, max_size=1 << 20)
    with pytest.raises(DocumentTooLarge):
        group.seal(second, MARKER * 100, max_size=len(MARKER))
    group.discard([first, second])
    group.sync()
    group.close()
    assert _files(store.root) == []


def test_it_never_overwrites_a_blob(store: FilesystemBlobStore, keyring: Keyring) -> None:
    (blob_id,) = _ids("Ef", 1)
    store.write(blob_id, [b"already here"])
    group = SealGroup(store, keyring, chunk_size=4096)
    with pytest.raises(VaultError, match="write-once"):
        group.seal(blob_id, MARKER, max_size=1 << 20)
    group.close()
    with store.open(blob_id) as blob:
        assert blob.read() == b"already here"


def test_sync_fsyncs_every_file_and_folder_of_the_round(
    store: FilesystemBlobStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What "durable" means here: each blob's data, its name in its shard, and the new shard's
    # name in the store's root, all fsynced before `sync()` returns.
    synced: set[int] = set()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)  # the inode: what was fsynced, whatever its name
        real_fsync(fd)

    group = SealGroup(store, keyring, chunk_size=4096)
    blob_ids = _ids("Gh", 3)
    for blob_id in blob_ids:
        group.seal(blob_id, MARKER, max_size=1 << 20)
    monkeypatch.setattr(os, "fsync", fsync)
    group.sync()
    group.close()
    paths = [store.path_for(b) for b in blob_ids] + [store.root / "Gh", store.root]
    assert synced == {path.stat().st_ino for path in paths}


def test_a_blob_whose_write_fails_is_removed_and_the_round_goes_on(
    store: FilesystemBlobStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written under its final name (no temporary one): a write that fails half way (a full
    # disk) must not leave a truncated blob behind under that name.
    from vigie.lib import durable

    first, failing, third = _ids("Ij", 3)
    real_write_all = durable.write_all
    group = SealGroup(store, keyring, chunk_size=4096)
    group.seal(first, MARKER, max_size=1 << 20)

    def full_disk(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "write_all", full_disk)
    with pytest.raises(OSError, match="No space"):
        group.seal(failing, MARKER, max_size=1 << 20)
    monkeypatch.setattr(durable, "write_all", real_write_all)
    rows = {third: group.seal(third, MARKER, max_size=1 << 20)}
    group.sync()
    group.close()
    assert _files(store.root) == [f"Ij/{first}.blob", f"Ij/{third}.blob"]
    kek_id, wrapped, _size, _sha = rows[third]
    with vault.open(third, kek_id, wrapped, store=store, keyring=keyring) as chunks:
        assert b"".join(chunks) == MARKER


def test_a_symlink_planted_at_a_blob_name_is_refused_not_followed(
    store: FilesystemBlobStore, keyring: Keyring, tmp_path: Path
) -> None:
    # Someone with write access to a shard plants a link where the next blob will go, to
    # have the ciphertext written (or a file truncated) elsewhere: O_EXCL refuses the name.
    (blob_id,) = _ids("Kl", 1)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not the vault's")
    (store.root / "Kl").mkdir(parents=True)
    store.path_for(blob_id).symlink_to(target)
    group = SealGroup(store, keyring, chunk_size=4096)
    with pytest.raises(VaultError, match="write-once"):
        group.seal(blob_id, MARKER, max_size=1 << 20)
    group.close()
    assert target.read_bytes() == b"not the vault's"
    assert store.path_for(blob_id).is_symlink()


def test_a_round_opens_its_shard_folder_once_and_links_nothing(
    store: FilesystemBlobStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-blob filesystem work of a round: one create and its writes, no existence
    # check, no temporary name to link and unlink; the folder is opened once for all.
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append("folder" if flags & os.O_DIRECTORY else "file")
        return real_open(path, flags, *args, **kwargs)

    def no_link(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a blob of a round is created under its final name")

    (store.root / "Mn").mkdir(parents=True)
    blob_ids = _ids("Mn", 6)
    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "link", no_link)
    group = SealGroup(store, keyring, chunk_size=4096)
    for blob_id in blob_ids:
        group.seal(blob_id, MARKER, max_size=1 << 20)
    group.sync()
    group.close()
    assert opened.count("file") == 6
    assert opened.count("folder") == 1
    assert sorted(Path(f).name for f in _files(store.root)) == [f"{b}.blob" for b in blob_ids]
