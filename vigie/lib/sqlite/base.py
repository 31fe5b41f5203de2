"""Django's SQLite backend with one change: how a transaction waits for the write lock.

SQLite has one writer at a time; Vigie's transactions start with BEGIN IMMEDIATE, so they
queue for that lock at their start. SQLite's own busy handler waits with growing sleeps
(1, 2, 5, 10 … 100 ms): under a burst of writes (a lab pushing documents, the audit log of
many reads) a waiter keeps sleeping long after the lock was released, and throughput
collapses to a few dozen transactions per second. Here BEGIN is retried in Python every
0.5 to 5 ms until the configured timeout, then fails as before ("database is locked").
Only the wait for BEGIN changes: statements inside a transaction keep SQLite's handler.
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
        # The cursor first: connecting is what reads OPTIONS["transaction_mode"].
        cursor: Any = self.cursor()
        mode = getattr(self, "transaction_mode", None)
        statement = f"BEGIN {mode}" if mode else "BEGIN"
        timeout_ms = self._busy_timeout_ms()
        deadline = time.monotonic() + timeout_ms / 1000
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            delay = _FIRST_DELAY
            while True:
                try:
                    cursor.execute(statement)
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 1.5, _MAX_DELAY)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
