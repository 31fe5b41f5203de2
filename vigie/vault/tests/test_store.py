"""The blob store: write-once, atomic, durable files, and ids that cannot escape the root."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigie.vault.envelope import new_data_key, seal_chunks
from vigie.vault.errors import BlobMissing, DocumentTooLarge, VaultError
from vigie.vault.store import FilesystemBlobStore, get_store

BLOB_ID = "AbCdEf0123456789_-xyz"


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_it_writes_a_blob_into_its_shard(store: FilesystemBlobStore) -> None:
    written = store.write(BLOB_ID, [b"abc", b"", b"defg"])
    assert written == 7
    assert store.path_for(BLOB_ID) == store.root / "Ab" / f"{BLOB_ID}.blob"
    assert store.exists(BLOB_ID)
    with store.open(BLOB_ID) as blob:
        assert blob.read() == b"abcdefg"
    assert all_files(store.root) == [f"Ab/{BLOB_ID}.blob"]


def test_it_keeps_blobs_private(store: FilesystemBlobStore) -> None:
    store.write(BLOB_ID, [b"x"])
    assert stat.S_IMODE(store.path_for(BLOB_ID).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path_for(BLOB_ID).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700


def failing_after(pieces: int) -> Iterator[bytes]:
    for _ in range(pieces):
        yield b"x" * 1000
    raise OSError("the client went away")


def test_it_leaves_nothing_when_the_source_fails_midway(store: FilesystemBlobStore) -> None:
    with pytest.raises(OSError, match="went away"):
        store.write(BLOB_ID, failing_after(3))
    assert not store.exists(BLOB_ID)
    assert all_files(store.root) == []
    assert list(store.iter_stale_temp_files()) == []


def test_it_leaves_nothing_when_the_document_is_too_large(store: FilesystemBlobStore) -> None:
    chunks = seal_chunks(new_data_key(), BLOB_ID, io.BytesIO(b"x" * 5000), 1024, max_size=4096)
    with pytest.raises(DocumentTooLarge):
        store.write(BLOB_ID, chunks)
    assert all_files(store.root) == []


def test_it_refuses_to_overwrite_a_blob(store: FilesystemBlobStore) -> None:
    store.write(BLOB_ID, [b"first"])
    consumed: list[bytes] = []

    def second() -> Iterator[bytes]:
        consumed.append(b"read")
        yield b"second"

    with pytest.raises(VaultError, match="already exists"):
        store.write(BLOB_ID, second())
    assert consumed == []  # refused before reading anything
    with store.open(BLOB_ID) as blob:
        assert blob.read() == b"first"


def test_it_refuses_to_overwrite_a_blob_written_while_it_was_writing(
    store: FilesystemBlobStore,
) -> None:
    def racing() -> Iterator[bytes]:
        yield b"mine"
        store.write(BLOB_ID, [b"theirs"])  # another writer finishes first

    with pytest.raises(VaultError, match="already exists"):
        store.write(BLOB_ID, racing())
    with store.open(BLOB_ID) as blob:
        assert blob.read() == b"theirs"
    assert list(store.iter_stale_temp_files()) == []


@pytest.mark.parametrize(
    "blob_id",
    [
        "../../etc/passwd",
        "../../../../../../etc/shadow",
        "/etc/passwd",
        "..",
        "ab/../../cdefghijklmnop",
        "abcdefghijklmnop\n",
        "abcdefghijklmnop/",
        "abcdefghijklmno.",
        ".tmp-abcdefghijklmnop",
        "abcdefgh ijklmnop",
        "abcdefghijklmnop\x00",
        "ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐ",
        "short",
        "x" * 65,
        "",
    ],
)
def test_it_refuses_ids_that_could_escape_the_store(
    store: FilesystemBlobStore, blob_id: str
) -> None:
    for action in (
        lambda: store.path_for(blob_id),
        lambda: store.write(blob_id, [b"x"]),
        lambda: store.open(blob_id),
        lambda: store.exists(blob_id),
        lambda: store.delete(blob_id),
    ):
        with pytest.raises(VaultError, match="invalid blob id"):
            action()
    assert not store.root.exists()


def test_it_says_when_a_blob_is_missing(store: FilesystemBlobStore) -> None:
    with pytest.raises(BlobMissing, match=BLOB_ID):
        store.open(BLOB_ID)
    with pytest.raises(BlobMissing, match=BLOB_ID):
        store.delete(BLOB_ID)
    assert not store.exists(BLOB_ID)


def test_it_deletes_a_blob(store: FilesystemBlobStore) -> None:
    store.write(BLOB_ID, [b"x"])
    store.delete(BLOB_ID)
    assert not store.exists(BLOB_ID)
    assert list(store.iter_ids()) == []


def test_it_lists_blobs_but_not_temporary_or_foreign_files(store: FilesystemBlobStore) -> None:
    ids = {"aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaab", "zzzzzzzzzzzzzzzz-1", BLOB_ID}
    for blob_id in ids:
        store.write(blob_id, [b"x"])
    (store.root / "aa" / ".tmp-aaaaaaaaaaaaaaac-123").write_bytes(b"half")
    (store.root / "aa" / "notes.txt").write_bytes(b"?")
    (store.root / "aa" / "bbbbbbbbbbbbbbbb.blob").write_bytes(b"wrong shard")
    (store.root / "lost+found").mkdir()
    assert set(store.iter_ids()) == ids


def test_it_finds_temporary_files_left_by_a_crash(store: FilesystemBlobStore) -> None:
    store.write(BLOB_ID, [b"x"])
    leftover = store.root / "Ab" / f".tmp-{BLOB_ID}-0123456789ab"
    leftover.write_bytes(b"half a blob")
    assert list(store.iter_stale_temp_files()) == [leftover]


def test_it_lists_nothing_in_a_store_never_written(store: FilesystemBlobStore) -> None:
    assert list(store.iter_ids()) == []
    assert list(store.iter_stale_temp_files()) == []


def test_it_uses_the_blob_folder_from_settings(settings, tmp_path: Path) -> None:
    settings.VIGIE_BLOB_DIR = tmp_path / "somewhere"
    assert get_store().root == tmp_path / "somewhere"


def test_it_reports_unfinished_writes_with_their_age_and_discards_them(
    store: FilesystemBlobStore,
) -> None:
    store.write(BLOB_ID, [b"x"])
    leftover = store.root / "Ab" / f".tmp-{BLOB_ID}-0123456789ab"
    leftover.write_bytes(b"half a blob")
    (write,) = store.unfinished_writes()
    assert write.name == str(leftover)
    assert write.started_at == leftover.stat().st_mtime
    store.discard(write)
    assert not leftover.exists()
    assert store.exists(BLOB_ID)  # the finished blob is never an unfinished write


def test_it_tells_when_a_blob_was_written(store: FilesystemBlobStore) -> None:
    store.write(BLOB_ID, [b"x"])
    assert store.modified_at(BLOB_ID) == store.path_for(BLOB_ID).stat().st_mtime
    with pytest.raises(BlobMissing):
        store.modified_at("Zz" + BLOB_ID[2:])


def test_the_installation_store_follows_the_setting(settings, tmp_path: Path) -> None:
    from vigie.vault.store import get_blob_store

    settings.VIGIE_BLOB_DIR = tmp_path / "somewhere"
    store = get_blob_store()
    assert isinstance(store, FilesystemBlobStore)
    assert store.describe() == str(tmp_path / "somewhere")


def test_the_folder_store_is_refused_while_blobs_are_in_s3(settings, tmp_path: Path) -> None:
    # Code still asking for the folder would otherwise write blobs where nobody reads them.
    settings.VIGIE_BLOB_STORE = "s3"
    with pytest.raises(VaultError, match="get_blob_store"):
        get_store()
