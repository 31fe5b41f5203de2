"""The hot folder's two places, handled as if the other side of the depot were hostile.

The depot (`vigie intake folder DIR`) is shared: the lab's drop account writes there, so it
can rename, replace or symlink any name in it at any moment, between any two of Vigie's
system calls. Hence:

* Vigie opens DIR once and works relative to that descriptor (`dir_fd=`, the `*at()` calls):
  a name is looked up in that directory only, never through a path the writer could redirect.
* A file is read through `open(O_NOFOLLOW)` and checked with `fstat()` on the descriptor it
  got, so a symbolic link (planted, or swapped in after the listing) is never followed, and a
  FIFO or a device is never read.
* Vigie creates nothing in the depot and never enters a subfolder of it. The one name it
  may add there is the sender's own file, given back: a file replaced (renamed over, or
  rewritten) after Vigie read it and before Vigie moved it away was never stored, so it goes
  back to the depot, to be taken on a next pass (see `Outbox.move_in`).

Vigie's own place, the outbox (`--outbox`: done/, quarantine/ and the lock file), is outside
the depot, on the same filesystem (a move is one atomic rename), owned by Vigie's user and
closed to everybody else. It is checked when the watcher starts and before every pass: a
done/ or quarantine/ that was renamed, replaced, handed to another user or opened to others is
`FolderTampered` (the watcher raises a critical alert and stops). Every file Vigie creates
there is created with `O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from django.utils.translation import gettext as _

from vigie.lib import durable
from vigie.lib.renameat2 import rename_noreplace

DONE = "done"
QUARANTINE = "quarantine"
PLACES = (DONE, QUARANTINE)
LOCK_NAME = ".vigie-intake.lock"
# A file on its way out of the depot, in done/ or quarantine/, until Vigie has checked that it
# is the file it read (then renamed to its final name) or not (then given back to the depot).
# Followed by the file's name in the depot; one left by a crash is given back at start-up.
MOVING = ".vigie-moving-"

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under a .pdf name must not hang the watcher.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Group members may read (an operator's group); nobody but Vigie writes, others get nothing.
_FORBIDDEN_MODE = 0o027


class FolderTampered(Exception):
    """Vigie's own done/, quarantine/ or outbox is not what Vigie made: stop taking files."""


class NotRegular(Exception):
    """A name in the depot is not a plain file (a symbolic link, a folder, a FIFO...)."""

    def __init__(self, name: str, what: str) -> None:
        super().__init__(f"{name}: {what}")
        self.name = name
        self.what = what


@dataclass(frozen=True)
class Entry:
    """One name in the depot as `lstat` saw it (links are described, never followed)."""

    name: str
    mode: int
    size: int
    mtime_ns: int
    ctime: float
    uid: int

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def _entry(name: str, st: os.stat_result) -> Entry:
    return Entry(name, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime, st.st_uid)


# Which file a name led to when Vigie read it: its inode, and its size and modification time
# (a file rewritten in place keeps its inode).
Identity = tuple[int, int, int, int]


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def describe(dir_fd: int, name: str, mode: int) -> str:
    """What a non-regular entry is, for a reason file: a link's target is quoted, not opened."""
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = "?"
        return _("a symbolic link to %(target)r") % {"target": target}
    if stat.S_ISDIR(mode):
        return _("a folder")
    if stat.S_ISFIFO(mode):
        return _("a named pipe")
    return _("a special file (device or socket)")


class _Dir:
    """A directory descriptor, closed when its owner is closed or collected."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._close = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._close()

    def fsync(self) -> None:
        os.fsync(self.fd)

    def names(self) -> set[str]:
        return set(os.listdir(self.fd))  # noqa: PTH208 (a descriptor, which Path cannot take)


class Depot(_Dir):
    """The shared drop folder, reached only through the descriptor opened at start-up."""

    def __init__(self, path: Path) -> None:
        super().__init__(os.open(path, _DIRECTORY))
        self.path = path
        # What each name read led to, until the file leaves the depot (`Outbox.move_in`).
        self._read_as: dict[str, Identity] = {}

    def read_as(self, name: str) -> Identity | None:
        """The file `name` led to when it was last read; None if it was not read."""
        return self._read_as.get(name)

    def forget_reads(self, keep: set[str]) -> None:
        """Forget what was read under names no longer in the depot (taken away by the
        sender): a long-running watcher would otherwise keep them forever."""
        for name in set(self._read_as) - keep:
            del self._read_as[name]

    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        with os.scandir(self.fd) as listing:
            for item in listing:
                try:
                    found[item.name] = _entry(item.name, item.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue  # gone since the listing
        return found

    def lstat(self, name: str) -> Entry | None:
        try:
            return _entry(name, os.stat(name, dir_fd=self.fd, follow_symlinks=False))
        except OSError:
            return None

    def read(self, name: str, limit: int) -> bytes:
        """At most `limit` bytes of the plain file `name`; NotRegular for anything else."""
        try:
            fd = os.open(name, _READ, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link: it was never opened
                raise NotRegular(name, describe(self.fd, name, stat.S_IFLNK)) from None
            raise
        try:
            st = os.fstat(fd)  # what was opened, not what a second look-up would find
            if not stat.S_ISREG(st.st_mode):
                raise NotRegular(name, describe(self.fd, name, st.st_mode))
            self._read_as[name] = _identity(st)
            chunks: list[bytes] = []
            left = limit
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def open_for_writing(self, name: str) -> bool | None:
        """True if some process holds `name` open for writing; None when the kernel cannot say.

        A read lease is refused (EAGAIN) while any writer exists, and taking and dropping one
        at once is cheap. Leases need the caller to own the file (or CAP_LEASE) and a local
        filesystem; elsewhere the settle time alone protects us.
        """
        try:
            fd = os.open(name, _READ, dir_fd=self.fd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return True
            return None
        else:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            return False
        finally:
            os.close(fd)

    def unlink(self, name: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)


def _problem(st: os.stat_result, where: Path) -> str | None:
    """Why a directory of the outbox cannot be trusted, or None."""
    if not stat.S_ISDIR(st.st_mode):
        return _("%(dir)s is not a folder") % {"dir": where}
    if st.st_uid != os.geteuid():
        return _("%(dir)s belongs to user %(uid)d, not to Vigie's user (%(own)d)") % {
            "dir": where,
            "uid": st.st_uid,
            "own": os.geteuid(),
        }
    if st.st_mode & _FORBIDDEN_MODE:
        return _("%(dir)s has mode %(mode)04o: it must be writable by Vigie only (e.g. 0700)") % {
            "dir": where,
            "mode": stat.S_IMODE(st.st_mode),
        }
    return None


def _open_dir(name: str | Path, where: Path, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, _DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FolderTampered(
                _("%(dir)s is a symbolic link or not a folder") % {"dir": where}
            ) from None
        raise


class Outbox(_Dir):
    """Vigie's own folder: done/, quarantine/ and the lock, out of the depot writers' reach."""

    def __init__(self, path: Path) -> None:
        super().__init__(_open_dir(path, path))
        self.path = path
        self._places: dict[str, _Dir] = {}
        try:
            self._check_root()
            for place in PLACES:
                with suppress(FileExistsError):
                    os.mkdir(place, 0o700, dir_fd=self.fd)
                self._places[place] = _Dir(_open_dir(place, path / place, self.fd))
            self.fsync()
            self.verify()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for place in self._places.values():
            place.close()
        super().close()

    def _check_root(self) -> None:
        held = os.fstat(self.fd)
        problem = _problem(held, self.path)
        if problem is None:
            try:
                now = self.path.lstat()
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                problem = _("%(dir)s was renamed or replaced") % {"dir": self.path}
        if problem is not None:
            raise FolderTampered(problem)

    def verify(self) -> None:
        """FolderTampered unless the outbox, done/ and quarantine/ are still the ones we hold.

        A write always lands in the directory we opened; this check is what tells us (and the
        operator, by the alert) that the path no longer leads there, or that someone else
        could now write in it.
        """
        self._check_root()
        for place, held in self._places.items():
            where = self.path / place
            held_st = os.fstat(held.fd)
            problem = _problem(held_st, where)
            if problem is None:
                try:
                    now = os.stat(place, dir_fd=self.fd, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != (held_st.st_dev, held_st.st_ino):
                    problem = _("%(dir)s was renamed or replaced") % {"dir": where}
            if problem is not None:
                raise FolderTampered(problem)
        try:
            lock = os.stat(LOCK_NAME, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        self._check_lock(lock)

    def _check_lock(self, st: os.stat_result) -> None:
        where = self.path / LOCK_NAME
        if not stat.S_ISREG(st.st_mode):
            raise FolderTampered(_("%(file)s is not a plain file") % {"file": where})
        if st.st_uid != os.geteuid():
            raise FolderTampered(
                _("%(dir)s belongs to user %(uid)d, not to Vigie's user (%(own)d)")
                % {"dir": where, "uid": st.st_uid, "own": os.geteuid()}
            )

    def dev(self) -> int:
        return os.fstat(self.fd).st_dev

    def place(self, place: str) -> _Dir:
        return self._places[place]

    @contextmanager
    def locked(self) -> Iterator[bool]:
        """Hold the lock file's flock; yields False when another process holds it."""
        try:
            fd = os.open(LOCK_NAME, _CREATE, 0o600, dir_fd=self.fd)
        except FileExistsError:  # flock() needs no write access: reopen it read-only
            try:
                fd = os.open(LOCK_NAME, _READ, dir_fd=self.fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise FolderTampered(
                        _("%(file)s is not a plain file") % {"file": self.path / LOCK_NAME}
                    ) from None
                raise
        try:
            self._check_lock(os.fstat(fd))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def write_text(self, place: str, name: str, text: str) -> None:
        """`place/name` written whole (new temp + fsync + rename): never a torn file.

        Not `lib.durable.write_new`: every step here goes through the folder's descriptor
        (openat), so a sender who swaps a folder for a link cannot redirect the write."""
        where = self._places[place].fd
        temp = f".{name}.tmp"
        try:
            fd = os.open(temp, _CREATE, 0o600, dir_fd=where)
        except FileExistsError:
            # Left by a crash (only Vigie writes here): remove the name, never write through it.
            os.unlink(temp, dir_fd=where)
            fd = os.open(temp, _CREATE, 0o600, dir_fd=where)
        try:
            durable.write_all(fd, text.encode("utf-8", "surrogateescape"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=where, dst_dir_fd=where)

    def read_text(self, place: str, name: str) -> str:
        """`place/name` as text, "" if absent (a file Vigie wrote: never through a link)."""
        try:
            fd = os.open(name, _READ, dir_fd=self._places[place].fd)
        except FileNotFoundError:
            return ""
        with os.fdopen(fd, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")

    def move_in(self, depot: Depot, name: str, place: str, target: str) -> str:
        """Move `name` from the depot to `place/target`; "" when it arrived as it was read.

        Otherwise what happened, for the reason file. The writer may have swapped the name
        since we looked: a symbolic link is then deleted (its target was never opened, and no
        link into the rest of the disk is kept in Vigie's own folder), another non-plain file
        kept as found. A plain file that is not the one Vigie read (renamed over it, or
        rewritten, after the read) was never stored: it is given back to the depot, under its
        name if still free, to be taken on a next pass — moving it to done/ would lose it.
        The check is made after the file has left the depot (first under a `MOVING` name),
        so no later swap can slip in between the check and the move.
        """
        where = self._places[place].fd
        expected = depot.read_as(name)
        if expected is None:  # not read (a file refused unread, a lone PDF): nothing to compare
            os.rename(name, target, src_dir_fd=depot.fd, dst_dir_fd=where)
        else:
            # A name within 14 bytes of the filesystem's limit has no room for the prefix: it
            # is checked under its final name (a crash between that rename and the give-back
            # would leave the unstored file in done/: for such names only).
            moving = self.moving_name(place, name) or target
            os.rename(name, moving, src_dir_fd=depot.fd, dst_dir_fd=where)
            depot._read_as.pop(name, None)
            st = os.stat(moving, dir_fd=where, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and _identity(st) != expected:
                given = self.give_back(depot, place, moving, name)
                return _("replaced after Vigie read it: the new file was not stored; it was "
                         "put back in the folder as %(name)s, to be taken on a next pass") % {
                    "name": given
                }  # fmt: skip
            if moving != target:
                os.rename(moving, target, src_dir_fd=where, dst_dir_fd=where)
        return self._arrived(where, target)

    def moving_name(self, place: str, name: str) -> str | None:
        """`name` on its way out of the depot, in `place`; None if that would be too long."""
        moving = MOVING + name
        limit = os.fpathconf(self._places[place].fd, "PC_NAME_MAX")
        return moving if len(os.fsencode(moving)) <= limit else None

    def remove_read(self, depot: Depot, name: str) -> str:
        """`move_in` for --delete-done: the file leaves the depot and is deleted, if it is the
        one Vigie read; "" then, else what happened (as `move_in`)."""
        # A name too long for the prefix passes under a short one of its own (a crash before
        # the unlink gives it back under that name: for such names only).
        moving = (
            self.moving_name(DONE, name) or MOVING + hashlib.sha256(os.fsencode(name)).hexdigest()
        )
        note = self.move_in(depot, name, DONE, moving)
        if not note:
            os.unlink(moving, dir_fd=self._places[DONE].fd)
        return note

    def give_back(self, depot: Depot, place: str, moving: str, name: str) -> str:
        """Put `place/moving` back in the depot, never over a file there: as `name`, or
        `stem~N.ext` if a new file took that name meanwhile. Returns the name it got."""
        where = self._places[place].fd
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        candidate, n = name, 1
        while True:
            try:
                rename_noreplace(where, moving, depot.fd, candidate)
                return candidate
            except FileExistsError:
                n += 1
                candidate = f"{stem}~{n}.{ext}" if dot else f"{stem}~{n}"

    def moving_leftovers(self) -> list[tuple[str, str]]:
        """(place, name) of files a crash left on their way out of the depot."""
        return [
            (place, name)
            for place in PLACES
            for name in sorted(self._places[place].names())
            if name.startswith(MOVING) and len(name) > len(MOVING)
        ]

    def _arrived(self, where: int, target: str) -> str:
        st = os.stat(target, dir_fd=where, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            return ""
        what = describe(where, target, st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            os.unlink(target, dir_fd=where)
            return _("%(what)s: removed, never followed") % {"what": what}
        return _("%(what)s: kept as found, never read") % {"what": what}
