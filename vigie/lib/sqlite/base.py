"""Django's SQLite backend with one change: how a transaction waits for the write lock.

SQLite has one writer at a time; Vigie's transactions start with BEGIN IMMEDIATE, so they
queue for that lock at their start. SQLite's own busy handler waits with growing sleeps
(1, 2, 5, 10 … 100 ms): under a burst of writes (a lab pushing documents, the audit log of
many reads) a waiter keeps sleeping long after the lock was released, and throughput
collapses to a few dozen transactions per second. Here BEGIN is retried in Python every
0.5 to 5 ms until the configured timeout, then fails as before ("database is locked").
Only the wait for BEGIN changes: statements inside a transaction keep SQLite's handler.

Each attempt runs on a cursor of its own, closed right after. Retrying on the cursor of the
failed attempts (as this backend first did) once in some tens of thousands of waits, with
several connections of one process competing, returned from BEGIN with no transaction open:
the block then ran statement by statement without the lock, and two audit appenders gave the
same number to two events (seen in the fetch benchmark and once in the backup drill; a
six-thread stress reproduced it about once per 30,000 transactions, and with a fresh cursor
per attempt not once in a million). A BEGIN that returns without a transaction is refused.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.005


class DatabaseWrapper(base.DatabaseWrapper):
    def _busy_timeout_ms(self) -> int:
        return int(float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5)) * 1000)

    def _start_transaction_under_autocommit(self) -> None:
        # Connect first: connecting is what reads OPTIONS["transaction_mode"].
        self.ensure_connection()
        mode = getattr(self, "transaction_mode", None)
        statement = f"BEGIN {mode}" if mode else "BEGIN"
        timeout_ms = self._busy_timeout_ms()
        deadline = time.monotonic() + timeout_ms / 1000
        self.cursor().execute("PRAGMA busy_timeout = 0")
        try:
            delay = _FIRST_DELAY
            while True:
                cursor: Any = self.cursor()
                try:
                    cursor.execute(statement)
                    if not self.connection.in_transaction:
                        # Fail closed: never run a block meant to be atomic without the lock.
                        raise OperationalError(f"{statement} returned without a transaction")
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                finally:
                    cursor.close()
                time.sleep(delay)
                delay = min(delay * 1.5, _MAX_DELAY)
        finally:
            self.cursor().execute(f"PRAGMA busy_timeout = {timeout_ms}")
