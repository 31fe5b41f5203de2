"""`vigie check`: the database (reachable, migrated, its engine and SQLite library) and the
permissions of the data folders. The shared pieces are in `check_base.py`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from django.conf import settings

from vigie.ops.check_base import FAILURE, OK, WARNING, Context, Finding

# --- database ------------------------------------------------------------------------------


def check_database_reachable(ctx: Context) -> Finding:
    from django.db import connection

    from vigie.startup import redact_url

    where = redact_url(os.environ.get("DATABASE_URL", "") or str(connection.settings_dict["NAME"]))
    name = str(connection.settings_dict["NAME"])
    if (
        connection.vendor == "sqlite"
        and connection.connection is None
        and not name.startswith("file:")
        and name != ":memory:"
        and not Path(name).exists()
    ):
        # Connecting would create an empty database file; say what is missing instead.
        return Finding(
            "database",
            FAILURE,
            f"the database {name} does not exist",
            "run `vigie migrate` (or set DATABASE_URL to the PostgreSQL database)",
        )
    try:
        connection.ensure_connection()
    except Exception as exc:  # every driver has its own error types; all mean "unreachable"
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Finding(
            "database",
            FAILURE,
            f"cannot reach the database {where}: {first_line}",
            "check DATABASE_URL and that the database server is running and accepts Vigie",
        )
    ctx.database_reachable = True
    return Finding("database", OK, f"database reachable ({connection.vendor})")


def check_migrations(ctx: Context) -> Finding:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if not ctx.database_reachable:
        return Finding("database.migrations", WARNING, "not checked: the database is unreachable")
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        first = plan[0][0]
        return Finding(
            "database.migrations",
            FAILURE,
            f"the database is not migrated: {len(plan)} migration(s) not applied "
            f"(first: {first.app_label}.{first.name})",
            "run `vigie migrate` (after a backup), then restart Vigie",
        )
    ctx.database_migrated = True
    return Finding("database.migrations", OK, "all migrations applied")


def check_database_engine(ctx: Context) -> Finding:
    from django.db import connection

    if connection.vendor != "sqlite" or not settings.PRODUCTION:
        return Finding("database.engine", OK, f"database engine: {connection.vendor}")
    if settings.VIGIE_ALLOW_SQLITE:
        return Finding(
            "database.engine",
            WARNING,
            "SQLite in production (allowed by VIGIE_ALLOW_SQLITE): fine for one small site, "
            "but PostgreSQL is what production is tested for",
            "move to PostgreSQL (DATABASE_URL=postgres://...) when you can",
        )
    return Finding(
        "database.engine",
        FAILURE,
        "the database is SQLite in production mode",
        "set DATABASE_URL=postgres://... and run `vigie migrate`; or, for a small single-"
        "machine installation, accept SQLite explicitly with VIGIE_ALLOW_SQLITE=1",
    )


def sqlite_database_file() -> Path | None:
    """The SQLite database file this installation uses; None on PostgreSQL or in memory."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def _open_mode(path: Path) -> int | None:
    """The group/other bits of `path`, or None when it does not exist (yet)."""
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o077
    except FileNotFoundError:
        return None


def check_data_permissions(ctx: Context) -> Finding:
    """VIGIE_HOME, the blob store and a SQLite database are for the Vigie user alone.

    Outside systemd (no UMask=0077), a folder made by hand or a database created before Vigie
    set its own umask is typically 0755/0644: every local account could then read the
    database, and the encrypted blobs whose sizes and dates alone say a lot.
    """
    wanted: list[tuple[Path, str, str]] = [
        (Path(settings.VIGIE_HOME), "VIGIE_HOME", "700"),
        (Path(settings.VIGIE_BLOB_DIR), "the blob store", "700"),
    ]
    database = sqlite_database_file()
    if database is not None:
        wanted.append((database, "the SQLite database", "600"))
        # SQLite's journal files hold recent pages of the database itself.
        for suffix in ("-wal", "-shm", "-journal"):
            wanted.append((Path(f"{database}{suffix}"), "the SQLite journal", "600"))
    problems = []
    fixes = []
    for path, what, fix_mode in wanted:
        bits = _open_mode(path)
        if bits:
            full = stat.S_IMODE(path.stat().st_mode)
            access = "readable" if bits & 0o044 else "open"
            problems.append(f"{what} {path} is {access} by group/others (mode {full:04o})")
            fixes.append(f"chmod {fix_mode} {path}")
    if problems:
        return Finding("data.permissions", FAILURE, "; ".join(problems), " && ".join(fixes))
    return Finding(
        "data.permissions", OK, "VIGIE_HOME, the blob store and the database are private"
    )


# SQLite's WAL-reset bug (sqlite.org/wal.html, March 2026): from 3.7.0 to 3.51.2, when several
# connections write and checkpoint at once, a rare timing can lose a committed write. Fixed in
# 3.51.3 and backported to 3.44.6 and 3.50.7. Vigie's processes (web, intake, guard, backup)
# all write to the one file, so an installation on SQLite should know which library it runs.
WAL_RESET_FIX = (3, 51, 3)
_WAL_RESET_BACKPORTS = ((3, 44, 6), (3, 50, 7))


def sqlite_has_wal_reset_fix(version: tuple[int, int, int]) -> bool:
    if version >= WAL_RESET_FIX:
        return True
    return any(version[:2] == fixed[:2] and version >= fixed for fixed in _WAL_RESET_BACKPORTS)


def _sqlite_version() -> tuple[int, int, int]:
    import sqlite3

    major, minor, patch = sqlite3.sqlite_version_info
    return major, minor, patch


def check_sqlite_library(ctx: Context) -> list[Finding]:
    from django.db import connection

    if connection.vendor != "sqlite":
        return []
    version = _sqlite_version()
    shown = ".".join(map(str, version))
    if sqlite_has_wal_reset_fix(version):
        return [Finding("database.sqlite_library", OK, f"SQLite library {shown}")]
    return [
        Finding(
            "database.sqlite_library",
            WARNING,
            f"the SQLite library is {shown}, older than the fix of SQLite's WAL-reset bug "
            "(3.51.3; backports 3.44.6, 3.50.7): with several Vigie processes writing, a rare "
            "timing can lose a committed write",
            "use PostgreSQL (DATABASE_URL=postgres://...), or run Vigie's Python with a fixed "
            "SQLite; if your distribution backported the fix to this version, ignore this",
        )
    ]
