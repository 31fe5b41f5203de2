"""`rename_noreplace`: the one rename that never replaces a file (the hot folder's give-back)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigie.lib.renameat2 import rename_noreplace


def test_it_moves_a_file_to_a_free_name(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rename_noreplace(fd, "a", fd, "b")
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert (tmp_path / "b").read_bytes() == b"a"


def test_it_never_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"mine")
    (tmp_path / "b").write_bytes(b"theirs, arrived meanwhile")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            rename_noreplace(fd, "a", fd, "b")
        with pytest.raises(FileNotFoundError):
            rename_noreplace(fd, "absent", fd, "c")
    finally:
        os.close(fd)
    assert (tmp_path / "a").read_bytes() == b"mine"
    assert (tmp_path / "b").read_bytes() == b"theirs, arrived meanwhile"
