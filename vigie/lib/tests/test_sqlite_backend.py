"""The SQLite backend's wait for the write lock: it waits (it does not fail at once), it
proceeds as soon as the lock is free, and it still gives up after the configured timeout."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.utils import OperationalError

from vigie.lib.sqlite.base import DatabaseWrapper


def _wrapper(path: Path, timeout: float) -> DatabaseWrapper:
    settings_dict: dict[str, Any] = dict(connections["default"].settings_dict)
    settings_dict.update(
        ENGINE="vigie.lib.sqlite",
        NAME=str(path),
        OPTIONS={"transaction_mode": "IMMEDIATE", "timeout": timeout},
    )
    return DatabaseWrapper(settings_dict, alias=f"lockwait-{path.name}-{timeout}")


@pytest.fixture(autouse=True)
def _own_files_only(django_db_blocker: Any) -> Iterator[None]:
    # These tests open their own SQLite files, never the test database.
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "lock.sqlite3"
    setup = _wrapper(path, 1)
    with setup.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("CREATE TABLE t (n INTEGER)")
    setup.close()
    return path


def _hold_write_lock(path: Path, seconds: float, started: threading.Event) -> None:
    # Another writer (plain sqlite3, as another process would be) holds the write lock.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    started.set()
    time.sleep(seconds)
    holder.execute("COMMIT")
    holder.close()


def test_a_transaction_waits_for_the_writer_then_proceeds(database: Path) -> None:
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(database, 0.3, started))
    holder.start()
    assert started.wait(5)
    waiter = _wrapper(database, 5)
    begun = time.monotonic()
    waiter._start_transaction_under_autocommit()
    waited = time.monotonic() - begun
    with waiter.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (2)")
    waiter.connection.commit()
    holder.join()
    # It waited for the holder instead of failing with "database is locked".
    assert waited > 0.1
    with waiter.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone() == (2,)
        # The statement-level busy timeout is back to the configured one.
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone() == (5000,)
    waiter.close()


def test_it_still_gives_up_after_the_timeout(database: Path) -> None:
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(database, 1.0, started))
    holder.start()
    assert started.wait(5)
    waiter = _wrapper(database, 0.2)
    begun = time.monotonic()
    with pytest.raises(OperationalError, match="locked"):
        waiter._start_transaction_under_autocommit()
    assert time.monotonic() - begun >= 0.2
    holder.join()
    waiter.close()


def test_a_transaction_that_waited_for_the_lock_is_a_real_transaction(database: Path) -> None:
    # The lost-update attack on the audit chain's numbering: with several connections of one
    # process competing, a BEGIN retried on the cursor of its failed attempts once in tens of
    # thousands "succeeded" with no transaction open, so the block's reads and writes ran
    # unlocked and two appenders numbered the same event (seen in the fetch benchmark). Each
    # block here checks that SQLite really is in a transaction, and that no increment is lost.
    stop = time.monotonic() + 8
    outside: list[int] = []
    done: list[int] = []

    def work() -> None:
        wrapper = _wrapper(database, 20)
        count = 0
        while time.monotonic() < stop:
            wrapper._start_transaction_under_autocommit()
            if not wrapper.connection.in_transaction:
                outside.append(1)
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM t")
                (seen,) = cursor.fetchone()
                cursor.execute("INSERT INTO t VALUES (?)", [seen])
            wrapper.connection.commit()
            count += 1
        wrapper.close()
        done.append(count)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outside == []
    check = sqlite3.connect(database)
    # Every block read the count and wrote it: distinct values 0..n-1 when each was atomic.
    total, distinct = check.execute("SELECT count(*), count(DISTINCT n) FROM t").fetchone()
    check.close()
    assert total == sum(done)
    assert distinct == total
