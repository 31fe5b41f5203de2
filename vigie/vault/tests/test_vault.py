"""The facade records uses: seal, open, rewrap."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigie import vault
from vigie.vault import SealedDocument
from vigie.vault.envelope import HEADER_SIZE
from vigie.vault.errors import (
    BlobMissing,
    DocumentTooLarge,
    IntegrityError,
    KeyringError,
    VaultError,
)
from vigie.vault.kek_store import Keyring
from vigie.vault.store import FilesystemBlobStore

DOC = "doc-0123456789abcdef"
OTHER_DOC = "doc-fedcba9876543210"
# A recognisable plaintext, so we can look for it on disk.
MARKER = b"PATIENT DUPONT Jeanne, INS 2 84 05 75 123 456 78 -- hemoglobin 13.2 g/dL\n"
CONTENT = MARKER * 2000  # ~150 KB, several chunks


def seal(store: FilesystemBlobStore, keyring: Keyring, data: bytes = CONTENT, doc: str = DOC, **kw):
    kw.setdefault("chunk_size", 4096)
    kw.setdefault("max_size", 10 * 1024 * 1024)
    return vault.seal(doc, io.BytesIO(data), store=store, keyring=keyring, **kw)


def read(
    sealed: SealedDocument, store: FilesystemBlobStore, keyring: Keyring, doc: str = DOC
) -> bytes:
    return b"".join(
        vault.open(doc, sealed.kek_id, sealed.wrapped_key, store=store, keyring=keyring)
    )


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def test_it_seals_and_opens_a_document(store: FilesystemBlobStore, keyring: Keyring) -> None:
    sealed = seal(store, keyring)
    assert sealed.kek_id == keyring.active_id
    assert sealed.size == len(CONTENT)
    assert sealed.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert store.exists(DOC)
    assert read(sealed, store, keyring) == CONTENT


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097])
def test_it_round_trips_around_the_chunk_size(
    store: FilesystemBlobStore, keyring: Keyring, size: int
) -> None:
    data = os.urandom(size)
    assert read(seal(store, keyring, data), store, keyring) == data


def test_it_never_writes_plaintext_to_disk(
    store: FilesystemBlobStore, keyring: Keyring, tmp_path: Path
) -> None:
    seal(store, keyring)
    with pytest.raises(DocumentTooLarge):
        seal(store, keyring, doc=OTHER_DOC, max_size=len(CONTENT) - 1)
    for path in files_under(tmp_path):
        content = path.read_bytes()
        assert MARKER[:32] not in content, path
        assert b"hemoglobin" not in content, path


def test_it_leaves_nothing_behind_when_the_document_is_too_large(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    with pytest.raises(DocumentTooLarge, match=DOC):
        seal(store, keyring, max_size=1000)
    assert list(store.iter_ids()) == []
    assert list(store.iter_stale_temp_files()) == []


def test_it_refuses_an_invalid_document_id_before_reading_anything(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    source = io.BytesIO(CONTENT)
    with pytest.raises(VaultError, match="invalid blob id"):
        vault.seal("../../etc/passwd", source, store=store, keyring=keyring)
    assert source.tell() == 0


def test_it_writes_nothing_when_the_keyring_is_unusable(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    keyring.path.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        seal(store, keyring)
    assert not store.root.exists()


def test_it_refuses_to_seal_a_document_twice(store: FilesystemBlobStore, keyring: Keyring) -> None:
    first = seal(store, keyring)
    with pytest.raises(VaultError, match="write-once"):
        seal(store, keyring, b"replacement")
    assert read(first, store, keyring) == CONTENT


def test_it_detects_blobs_swapped_between_documents(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    mine = seal(store, keyring, doc=DOC)
    theirs = seal(store, keyring, b"someone else's results", doc=OTHER_DOC)
    mine_path, theirs_path = store.path_for(DOC), store.path_for(OTHER_DOC)
    mine_bytes, theirs_bytes = mine_path.read_bytes(), theirs_path.read_bytes()
    mine_path.write_bytes(theirs_bytes)
    theirs_path.write_bytes(mine_bytes)
    # Refused by open() itself, before a single byte could reach a response.
    with pytest.raises(IntegrityError, match=f"document {DOC}: chunk 0"):
        vault.open(DOC, mine.kek_id, mine.wrapped_key, store=store, keyring=keyring)
    with pytest.raises(IntegrityError, match=f"document {OTHER_DOC}: chunk 0"):
        vault.open(OTHER_DOC, theirs.kek_id, theirs.wrapped_key, store=store, keyring=keyring)


def test_it_detects_a_wrapped_key_copied_from_another_document(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    seal(store, keyring, doc=DOC)
    theirs = seal(store, keyring, doc=OTHER_DOC)
    with pytest.raises(IntegrityError, match="wrapped data key"):
        vault.open(DOC, theirs.kek_id, theirs.wrapped_key, store=store, keyring=keyring)


def test_it_detects_a_tampered_blob_during_streaming(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    sealed = seal(store, keyring)
    path = store.path_for(DOC)
    damaged = bytearray(path.read_bytes())
    damaged[HEADER_SIZE + 3 * (4096 + 16) + 100] ^= 1
    path.write_bytes(bytes(damaged))
    stream = vault.open(DOC, sealed.kek_id, sealed.wrapped_key, store=store, keyring=keyring)
    yielded = [next(stream), next(stream), next(stream)]
    with pytest.raises(IntegrityError, match="chunk 3"):
        next(stream)
    assert b"".join(yielded) == CONTENT[: 3 * 4096]


def test_it_says_when_the_blob_is_missing(store: FilesystemBlobStore, keyring: Keyring) -> None:
    sealed = seal(store, keyring)
    store.delete(DOC)
    with pytest.raises(BlobMissing, match=DOC):
        vault.open(DOC, sealed.kek_id, sealed.wrapped_key, store=store, keyring=keyring)


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_it_closes_the_blob_when_done_or_abandoned(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    sealed = seal(store, keyring)
    before = _open_fds()
    read(sealed, store, keyring)
    assert _open_fds() == before
    stream = vault.open(DOC, sealed.kek_id, sealed.wrapped_key, store=store, keyring=keyring)
    next(stream)
    stream.close()  # what StreamingHttpResponse does when the client goes away
    assert _open_fds() == before
    with vault.open(DOC, sealed.kek_id, sealed.wrapped_key, store=store, keyring=keyring) as s:
        next(s)
    assert _open_fds() == before


def test_it_rewraps_with_the_active_key_without_touching_content(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    sealed = seal(store, keyring)
    blob_before = store.path_for(DOC).read_bytes()
    new_id = keyring.add_key()
    kek_id, wrapped = vault.rewrap(DOC, sealed.kek_id, sealed.wrapped_key, keyring=keyring)
    assert kek_id == new_id != sealed.kek_id
    assert store.path_for(DOC).read_bytes() == blob_before
    keyring.remove_key(sealed.kek_id)
    rewrapped = SealedDocument(kek_id, wrapped, sealed.size, sealed.sha256)
    assert read(rewrapped, store, keyring) == CONTENT
    with pytest.raises(KeyringError, match="unknown key id"):
        read(sealed, store, keyring)


def test_it_refuses_to_rewrap_a_key_of_another_document(keyring: Keyring) -> None:
    kek_id, wrapped = keyring.wrap(os.urandom(32), DOC)
    with pytest.raises(IntegrityError):
        vault.rewrap(OTHER_DOC, kek_id, wrapped, keyring=keyring)


def test_it_uses_the_settings_by_default(settings, tmp_path: Path) -> None:
    settings.VIGIE_BLOB_DIR = tmp_path / "blobs"
    settings.VIGIE_KEYRING_FILE = tmp_path / "keyring" / "keyring.json"
    settings.VIGIE_VAULT_CHUNK_SIZE = 1024
    settings.VIGIE_MAX_DOCUMENT_SIZE = 10_000
    Keyring.create(settings.VIGIE_KEYRING_FILE)

    sealed = vault.seal(DOC, io.BytesIO(CONTENT[:5000]))
    blob = (tmp_path / "blobs" / DOC[:2] / f"{DOC}.blob").read_bytes()
    assert int.from_bytes(blob[5:9], "big") == 1024
    assert b"".join(vault.open(DOC, sealed.kek_id, sealed.wrapped_key)) == CONTENT[:5000]
    assert vault.rewrap(DOC, sealed.kek_id, sealed.wrapped_key)[0] == sealed.kek_id
    with pytest.raises(DocumentTooLarge):
        vault.seal(OTHER_DOC, io.BytesIO(CONTENT[:10_001]))


def test_it_imports_no_django() -> None:
    # The vault is a library: only the get_* helpers read Django settings, when called.
    code = (
        "import sys, vigie.vault, vigie.vault.envelope, vigie.vault.kek_store, vigie.vault.store;"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'django');"
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- files sealed outside the store (the backup's database snapshot) --------------------------


def test_a_sealed_file_opens_under_its_label_only(keyring: Keyring, tmp_path: Path) -> None:
    import stat

    target = tmp_path / "out" / "database.sealed"
    target.parent.mkdir()
    sealed = vault.seal_file("backup/s1/database", io.BytesIO(CONTENT), target, keyring=keyring)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert MARKER not in target.read_bytes()
    assert (sealed.size, sealed.sha256) == (len(CONTENT), hashlib.sha256(CONTENT).hexdigest())
    with vault.open_file(
        "backup/s1/database", sealed.kek_id, sealed.wrapped_key, target, keyring=keyring
    ) as stream:
        assert b"".join(stream) == CONTENT
    # The same file under another label (another snapshot, another role) does not open.
    with pytest.raises(IntegrityError):
        vault.open_file(
            "backup/s2/database", sealed.kek_id, sealed.wrapped_key, target, keyring=keyring
        )


def test_sealing_a_file_never_overwrites_one(keyring: Keyring, tmp_path: Path) -> None:
    target = tmp_path / "database.sealed"
    target.write_bytes(b"already here")
    with pytest.raises(FileExistsError):
        vault.seal_file("backup/s1/database", io.BytesIO(CONTENT), target, keyring=keyring)
    assert target.read_bytes() == b"already here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["database.sealed", "keyring"]


def test_it_refuses_to_open_a_document_as_a_file(
    store: FilesystemBlobStore, keyring: Keyring
) -> None:
    # open_file with a document's id would be a way around records' access decision and audit.
    sealed = seal(store, keyring)
    with pytest.raises(VaultError, match="must contain '/'"):
        vault.open_file(
            DOC, sealed.kek_id, sealed.wrapped_key, store.path_for(DOC), keyring=keyring
        )
