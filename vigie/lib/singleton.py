"""Cluster-wide singletons: any number of nodes run a background job, exactly one does the work.

    with singleton("backup") as held:
        if held:
            ...  # this node does the work; the others skip

A loop that must stay the worker across passes (the audit watcher keeps its rules' position
in memory) keeps a `Singleton` and calls `acquire()` before each pass: it returns True while
this process still holds the lock, and takes it over when the holder has gone.

How the lock is held:

* PostgreSQL: a session-level `pg_try_advisory_lock` on a *dedicated* connection opened for
  the lock, not the one the job's queries use. Session-level, because the jobs run many
  transactions of their own (each audit append commits, a backup runs for minutes), so a
  per-run `pg_try_advisory_xact_lock` would have to wrap the whole job in one transaction,
  changing what it commits when. Dedicated, because Django closes and reopens its own
  connections (CONN_MAX_AGE, health checks, `close_old_connections`), which would drop a
  session lock silently. The lock dies with its session: a node killed -9, or cut off from
  the database, lets another take over once PostgreSQL notices the dead backend. The
  connection's `application_name` is `vigie@<host>:<pid>`, so `holders()` (and
  `vigie check`) can say which node holds which job.
* SQLite (one machine): an exclusive `flock` on `VIGIE_HOME/locks/<name>.lock`, released by
  the kernel when the holder exits, however it exits. Same API, same code path in the jobs.

Lock ids are derived from the name (BLAKE2b, 64 bits), so every node computes the same id
without a registry, and they cannot collide with the audit chain's append lock, a constant.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections

logger = logging.getLogger(__name__)

# The cluster-wide jobs, for `holders()`: a lock is only listed if its name is known here.
AUDIT_WATCH = "audit-watch"
BACKUP = "backup"
KEY_ROTATION = "key-rotation"
DECOYS = "decoys"
KNOWN = (AUDIT_WATCH, BACKUP, KEY_ROTATION, DECOYS)

# PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes.
_APPLICATION_NAME_MAX = 63


def lock_id(name: str) -> int:
    """The signed 64-bit advisory lock key of `name`, the same on every node."""
    digest = hashlib.blake2b(f"vigie-singleton:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def node_name() -> str:
    """This process as `vigie@<host>:<pid>` (its lock connections' application_name)."""
    return f"vigie@{socket.gethostname()}:{os.getpid()}"[:_APPLICATION_NAME_MAX]


def _pg_key_parts(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid), high and low 32 bits."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def lock_dir() -> Path:
    return Path(settings.VIGIE_HOME) / "locks"


class Singleton:
    """One named cluster-wide lock, held by this process from `acquire()` to `release()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.key = lock_id(name)
        self._pg: Any = None  # a dedicated Django DatabaseWrapper
        self._pg_held = False
        self._fd: int | None = None
        # The last `acquire()` could not reach the database (so nobody is known to hold it).
        self.unreachable = False

    @property
    def postgresql(self) -> bool:
        return bool(connection.vendor == "postgresql")

    def acquire(self) -> bool:
        """True if this process holds the lock now (taking it if free); never blocks.

        Called again while held, it checks the lock is still there: a dedicated session that
        the database dropped (restart, failover) has lost it, and another node may have it.
        A database that cannot be reached means "not held": the job skips this pass.
        """
        if self.postgresql:
            return self._acquire_pg()
        return self._acquire_file()

    def release(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(DatabaseError):
                if self._pg_held:
                    # Explicitly: the server ends a closed session a moment later, and a
                    # contender asking in between would be told the lock is still taken.
                    with self._pg.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            with contextlib.suppress(DatabaseError):
                self._pg.close()
            self._pg = None
            self._pg_held = False
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- PostgreSQL ---

    def _connect(self) -> Any:
        default = connections[DEFAULT_DB_ALIAS]  # `connection` is only a proxy to it
        settings_dict = copy.deepcopy(default.settings_dict)
        options = settings_dict.setdefault("OPTIONS", {})
        options.pop("pool", None)  # a pooled connection would carry the lock back to the pool
        options["application_name"] = node_name()
        wrapper = type(default)(settings_dict, alias=f"singleton-{self.name}")
        wrapper.ensure_connection()
        return wrapper

    def _acquire_pg(self) -> bool:
        self.unreachable = False
        try:
            if self._pg is None:
                self._pg = self._connect()
            with self._pg.cursor() as cursor:
                if self._pg_held:
                    classid, objid = _pg_key_parts(self.key)
                    cursor.execute(
                        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND pid = pg_backend_pid() AND classid::bigint = %s"
                        " AND objid::bigint = %s AND objsubid = 1",
                        [classid, objid],
                    )
                    held = cursor.fetchone() is not None
                else:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                    row = cursor.fetchone()
                    held = bool(row and row[0])
        except DatabaseError:
            logger.warning("singleton %s: database unreachable; not held", self.name)
            self.release()
            self.unreachable = True
            return False
        if self._pg_held and not held:
            logger.warning("singleton %s: lock lost (session ended); not held", self.name)
            self.release()
            return False
        self._pg_held = held
        return held

    # --- one machine: a lock file ---

    def _acquire_file(self) -> bool:
        if self._fd is not None:
            return True
        folder = lock_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, node_name().encode(), 0)
        self._fd = fd
        return True


@contextlib.contextmanager
def singleton(name: str) -> Iterator[bool]:
    """Hold the lock `name` for the block if no other node holds it; yield whether we do."""
    lock = Singleton(name)
    try:
        yield lock.acquire()
    finally:
        lock.release()


@dataclass(frozen=True)
class Holder:
    name: str
    node: str  # `vigie@<host>:<pid>`, or "" when held but unnamed


def holders() -> list[Holder]:
    """Which node holds each known singleton now (those nobody holds are left out)."""
    if connection.vendor == "postgresql":
        return _pg_holders()
    return _file_holders()


def _pg_holders() -> list[Holder]:
    by_parts = {_pg_key_parts(lock_id(name)): name for name in KNOWN}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.classid::bigint, l.objid::bigint, COALESCE(a.application_name, '')"
            " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        )
        rows = cursor.fetchall()
    found = [Holder(by_parts[(c, o)], app) for c, o, app in rows if (c, o) in by_parts]
    return sorted(found, key=lambda h: h.name)


def _file_holders() -> list[Holder]:
    found = []
    for name in KNOWN:
        path = lock_dir() / f"{name}.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                found.append(Holder(name, os.pread(fd, 200, 0).decode("utf-8", "replace")))
        finally:
            os.close(fd)
    return found
