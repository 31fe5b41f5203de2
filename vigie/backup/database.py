"""The database part of a snapshot: taken online and consistent, restored, opened for checks.

SQLite: the online backup API copies the whole database in one step under one read
transaction; in WAL mode the portal keeps reading and writing meanwhile.

PostgreSQL: a REPEATABLE READ transaction exports its snapshot; `pg_dump --snapshot` dumps
exactly what that transaction sees, and the same transaction lists the documents whose
blobs must be copied. Every row in the dump therefore has its blob on disk already (the vault
writes the blob durably before the row commits), whatever is ingested meanwhile.

Neither is ever written in clear to the backup disk: the snapshot is streamed into a sink that
seals it (see `sealed`); restore and verify get its plaintext from a `fill` that decrypts it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import load_backend

from vigie.lib import durable

SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"


class DatabaseBackupError(Exception):
    """The database could not be dumped, restored or opened; the message says why."""


@dataclass(frozen=True)
class SnapshotFacts:
    """What the snapshot's own transaction saw."""

    blob_ids: list[str]
    documents: int
    pending: int
    audit_seq: int
    audit_hash: str
    migrations: dict[str, str]


def engine() -> str:
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    if vendor not in {"sqlite", "postgresql"}:
        raise DatabaseBackupError(f"cannot back up a {vendor} database")
    return vendor


def _tables() -> dict[str, str]:
    from vigie.audit.models import AuditHead
    from vigie.records.models import Document, PendingDocument

    return {
        "document": Document._meta.db_table,
        "pending": PendingDocument._meta.db_table,
        "head": AuditHead._meta.db_table,
    }


def _facts(cursor: Any) -> SnapshotFacts:
    """Read the facts through a DB-API cursor of the snapshot (both drivers accept no params)."""
    t = _tables()
    cursor.execute(f"SELECT id FROM {t['document']} ORDER BY id")  # noqa: S608 - model names
    documents = [row[0] for row in cursor.fetchall()]
    cursor.execute(f"SELECT id FROM {t['pending']} ORDER BY id")  # noqa: S608
    pending = [row[0] for row in cursor.fetchall()]
    cursor.execute(f"SELECT seq, hash FROM {t['head']} WHERE id = 1")  # noqa: S608
    head = cursor.fetchone() or (0, "")
    cursor.execute("SELECT app, max(name) FROM django_migrations GROUP BY app ORDER BY app")
    migrations = dict(cursor.fetchall())
    return SnapshotFacts(
        blob_ids=documents + pending,
        documents=len(documents),
        pending=len(pending),
        audit_seq=int(head[0]),
        audit_hash=str(head[1]),
        migrations=migrations,
    )


# Where the SQLite snapshot is taken before it is sealed into DEST. Beside the live database's
# home, never on the backup disk: a crash there must not leave a copy in clear on the disk that
# gets stolen. It holds what the live database holds, in the same private folder.
SCRATCH_PREFIX = ".backup-scratch-"
# A scratch folder older than this was left by a crashed backup, not by a running one.
SCRATCH_GRACE_SECONDS = 6 * 3600

# Receives the snapshot's file name and a stream of its plaintext; seals it into DEST.
Sink = Callable[[str, BinaryIO], None]


def snapshot(sink: Sink) -> SnapshotFacts:
    """Stream one consistent snapshot of the live database into `sink`; return what it holds."""
    if engine() == "sqlite":
        return _snapshot_sqlite(sink)
    return _snapshot_postgres(sink)


def _sqlite_path() -> Path:
    return Path(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])


def _scratch_root() -> Path:
    home = Path(settings.VIGIE_HOME)
    durable.make_private_dir(home)
    now = time.time()
    for leftover in home.glob(f"{SCRATCH_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime >= SCRATCH_GRACE_SECONDS:
                shutil.rmtree(leftover)
    return home


def _snapshot_sqlite(sink: Sink) -> SnapshotFacts:
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=_scratch_root()) as scratch:
        target = Path(scratch) / SQLITE_FILE
        os.close(durable.create_private(target))  # SQLite takes an empty file as a new database
        # A connection of our own: Django's may be inside a transaction, and the backup API
        # needs the source idle. The timeout covers a writer holding the lock for a moment.
        name = str(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])
        # Django opens SQLite with URIs allowed ("file:…?mode=memory&cache=shared" in tests).
        source = sqlite3.connect(name, timeout=60, uri=name.startswith("file:"))
        try:
            copy = sqlite3.connect(target)
            try:
                # One step (pages=-1): the whole database under one read transaction, so the
                # copy is a single point in time even while others write.
                source.backup(copy)
                # One self-contained file: no -wal beside it.
                copy.execute("PRAGMA journal_mode=DELETE")
                facts = _facts(copy.cursor())
            finally:
                copy.close()
        except sqlite3.Error as exc:
            raise DatabaseBackupError(f"SQLite online backup failed: {exc}") from None
        finally:
            source.close()
        with target.open("rb", buffering=0) as handle:
            sink(SQLITE_FILE, handle)
    return facts


def _pg_settings(alias: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    return dict(connections[alias].settings_dict)


def pg_env(settings_dict: dict[str, Any]) -> dict[str, str]:
    """libpq's environment for pg_dump/pg_restore: the password never appears in argv."""
    env = dict(os.environ)
    options = settings_dict.get("OPTIONS") or {}
    for variable, value in (
        ("PGHOST", settings_dict.get("HOST")),
        ("PGPORT", settings_dict.get("PORT")),
        ("PGUSER", settings_dict.get("USER")),
        ("PGPASSWORD", settings_dict.get("PASSWORD")),
        ("PGSSLMODE", options.get("sslmode")),
        ("PGSSLROOTCERT", options.get("sslrootcert")),
        ("PGPASSFILE", options.get("passfile")),
        # With a list of servers (a primary and its standbys), the one that takes writes.
        ("PGTARGETSESSIONATTRS", options.get("target_session_attrs")),
    ):
        if value:
            env[variable] = str(value)
    return env


def _pg_tool(name: str) -> str:
    tool = shutil.which(name)
    if tool is None:
        raise DatabaseBackupError(
            f"{name} not found: install PostgreSQL's client tools "
            "(Debian: apt-get install postgresql-client)"
        )
    return tool


def _run_pg_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    tool = _pg_tool(argv[0])
    # argv is ours (tool flags, a path we made, the configured database name); no shell.
    result = subprocess.run(  # noqa: S603
        [tool, *argv[1:]], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise DatabaseBackupError(f"{what} failed: {detail}")


def _snapshot_postgres(sink: Sink) -> SnapshotFacts:
    settings_dict = _pg_settings()
    tool = _pg_tool("pg_dump")
    # A connection apart from Django's: it holds the exported snapshot open until the dump
    # is done, whatever the caller's own connection does.
    wrapper = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        wrapper.ensure_connection()
        raw: Any = wrapper.connection
        raw.autocommit = False
        with raw.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot_name = cursor.fetchone()[0]
            facts = _facts(cursor)
            # The dump goes through a pipe straight into the sink: it never touches a disk
            # in clear. stderr goes to a file so that a chatty pg_dump cannot block on it.
            with tempfile.TemporaryFile() as errors:
                # argv is ours (tool flags, the configured database name); no shell.
                process = subprocess.Popen(  # noqa: S603
                    [
                        tool,
                        "--format=custom",
                        "--no-owner",
                        "--no-privileges",
                        f"--snapshot={snapshot_name}",
                        f"--dbname={settings_dict['NAME']}",
                    ],
                    env=pg_env(settings_dict),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                )
                stdout: Any = process.stdout  # a pipe: stdout=PIPE above
                try:
                    with stdout:
                        sink(PG_FILE, stdout)
                finally:
                    # A sink that failed early leaves pg_dump writing to a closed pipe: it
                    # stops on SIGPIPE, and is waited for either way.
                    returncode = process.wait()
                if returncode != 0:
                    errors.seek(0)
                    lines = errors.read().decode("utf-8", "replace").strip().splitlines()
                    detail = (lines or [f"exit code {returncode}"])[-1]
                    raise DatabaseBackupError(f"pg_dump failed: {detail}")
        raw.rollback()
    finally:
        wrapper.close()
    return facts


# --- restore -------------------------------------------------------------------------------


def target_is_empty() -> str | None:
    """None if the configured database holds nothing; else what is there."""
    if engine() == "sqlite":
        path = _sqlite_path()
        if path.exists() and path.stat().st_size > 0:
            return f"the database file {path} already exists"
        return None
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        count = cursor.fetchone()[0]
    if count:
        name = connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]
        return f"the PostgreSQL database {name} already has {count} table(s)"
    return None


# Writes the snapshot's plaintext into a new private file at the path it is given.
Fill = Callable[[Path], None]


def restore(fill: Fill, backup_engine: str) -> None:
    """Load the snapshot's database (written by `fill`) into the configured, empty database."""
    if backup_engine != engine():
        raise DatabaseBackupError(
            f"this backup holds a {backup_engine} database but this installation is configured "
            f"for {engine()}: set DATABASE_URL accordingly"
        )
    if backup_engine == "sqlite":
        target = _sqlite_path()
        connections[DEFAULT_DB_ALIAS].close()
        durable.make_private_dir(target.parent)
        tmp = target.with_name(f".{target.name}.restore-{secrets.token_hex(6)}")
        try:
            fill(tmp)  # private and fsynced
            durable.publish_new(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        durable.fsync_dir(target.parent)
        return
    settings_dict = _pg_settings()
    connections[DEFAULT_DB_ALIAS].close()
    # The dump in clear only while pg_restore reads it (it needs a file it can seek in), in a
    # private folder of this machine, which is about to hold the same rows in its database.
    with tempfile.TemporaryDirectory(prefix="vigie-restore-") as scratch:
        dump = Path(scratch) / PG_FILE
        fill(dump)
        _pg_restore(dump, settings_dict)


def _pg_restore(snapshot_file: Path, settings_dict: dict[str, Any]) -> None:
    _run_pg_tool(
        [
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={settings_dict['NAME']}",
            str(snapshot_file),
        ],
        pg_env(settings_dict),
        "pg_restore",
    )


# --- opening a snapshot for checks ---------------------------------------------------------


@contextmanager
def attached(fill: Fill, backup_engine: str) -> Iterator[str]:
    """The snapshot's database (written by `fill`) as a Django alias; removed afterwards.

    SQLite: decrypted into a private temporary folder (checks never touch the backup).
    PostgreSQL: a scratch database on the configured server, filled by pg_restore (which
    proves the dump restores), dropped at the end; the dump in clear is gone before it opens.
    """
    alias = f"backup_{secrets.token_hex(4)}"
    base = dict(connections.settings[DEFAULT_DB_ALIAS])
    if backup_engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="vigie-verify-") as scratch:
            copy = Path(scratch) / SQLITE_FILE
            fill(copy)
            base.update(
                ENGINE="vigie.lib.sqlite",
                NAME=str(copy),
                OPTIONS={"timeout": 20},
                CONN_MAX_AGE=0,
            )
            with _alias(alias, base):
                yield alias
        return
    if engine() != "postgresql":
        raise DatabaseBackupError(
            "checking a PostgreSQL backup needs a PostgreSQL server to restore it into: "
            "set DATABASE_URL to one (a scratch database is created and dropped there)"
        )
    scratch_name = f"vigie_verify_{secrets.token_hex(6)}"
    server = _pg_settings()
    _admin(server, f'CREATE DATABASE "{scratch_name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="vigie-verify-") as scratch:
            dump = Path(scratch) / PG_FILE
            fill(dump)
            _pg_restore(dump, {**server, "NAME": scratch_name})
        base.update(NAME=scratch_name, CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=False)
        with _alias(alias, base):
            yield alias
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{scratch_name}" WITH (FORCE)')


@contextmanager
def _alias(alias: str, settings_dict: dict[str, Any]) -> Iterator[None]:
    # A wrapper of our own, placed in this thread's connections but not in the configured
    # DATABASES: the ORM finds it with `.using(alias)`, and nothing else ever sees it.
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    connections[alias] = wrapper
    try:
        yield
    finally:
        wrapper.close()
        del connections[alias]


def _admin(server: dict[str, Any], statement: str) -> None:
    import psycopg

    params: dict[str, Any] = {
        "dbname": "postgres",
        "host": server.get("HOST") or None,
        "port": server.get("PORT") or None,
        "user": server.get("USER") or None,
        "password": server.get("PASSWORD") or None,
    }
    try:
        with psycopg.connect(
            **{k: v for k, v in params.items() if v is not None}, autocommit=True
        ) as conn:
            conn.execute(statement)  # names are ours, quoted
    except psycopg.Error as exc:
        raise DatabaseBackupError(f"PostgreSQL: {exc}") from None
