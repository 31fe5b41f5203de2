from __future__ import annotations

from pathlib import Path

import pytest

from vigie.vault.kek_store import Keyring
from vigie.vault.store import FilesystemBlobStore


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    return tmp_path / "keyring" / "keyring.json"


@pytest.fixture
def keyring(keyring_path: Path) -> Keyring:
    return Keyring.create(keyring_path)


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")
