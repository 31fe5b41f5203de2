"""Durable, private file-system steps, written once and carefully.

Used by the keyring and the blob store, and beyond the vault by the audit checkpoints, the
backups, key rotation and the startup checks.

Durability on Linux needs more than `write` + `rename`: the file's data must be fsynced
before it gets its final name, and the folder must be fsynced after, or a power cut can
leave the new name pointing at an empty file, or no name at all.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

# Files the vault creates are for the Vigie user only, whatever the process umask says.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

# link(2) is refused with these where a file system has no hard links (some FUSE, SMB, vfat).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write may write less than asked (signals, quotas); loop until everything is out."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def create_private(path: Path) -> int:
    """Open a new file (never an existing one) for writing, mode 0600 regardless of umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (new, renamed or removed names) survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> bool:
    """Create `path` (mode 0700) and its missing parents; return True if it was created.

    The new entry is fsynced in the parent folder, so a document acknowledged later does
    not sit in a folder that a power cut can make vanish.
    """
    if path.is_dir():
        return False
    make_private_dir(path.parent)
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        # Another process or thread won the race; the folder is what we wanted.
        return False
    path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    fsync_dir(path.parent)
    return True


def publish_new(tmp: Path, final: Path) -> None:
    """Give the fully written `tmp` the name `final`, refusing (FileExistsError) to replace
    an existing file.

    os.replace would silently overwrite; link(2) fails atomically when the name exists, so two
    writers racing for one name cannot clobber each other. A crash between link and unlink
    leaves a temporary name pointing at the same, complete file: harmless to delete.
    """
    try:
        os.link(tmp, final)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # No hard links here: the existence check and the rename are not atomic together,
        # but callers already refused existing names up front, so only a concurrent writer
        # of the same name could slip in.
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "file exists", str(final)) from exc
        tmp.replace(final)
        return
    tmp.unlink()


def write_new(
    path: Path,
    chunks: Iterable[bytes | bytearray | memoryview],
    *,
    tmp: Path | None = None,
    replace: bool = False,
) -> int:
    """Write `chunks` to a private file that takes the name `path` only once complete.

    The bytes go to `tmp` (by default a hidden name beside `path`), are fsynced, then the file
    is published — refusing with FileExistsError if `path` exists, unless `replace` — and the
    folder is fsynced. If anything fails, the iterator included, the temporary file is removed
    and the exception propagates: `path` is the whole new content or untouched. Returns the
    number of bytes written.
    """
    tmp = tmp or path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    fd = create_private(tmp)
    written = 0
    try:
        try:
            for chunk in chunks:
                write_all(fd, chunk)
                written += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            tmp.replace(path)
        else:
            publish_new(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return written
