"""Retry a short database write that met SQLite's "table is locked".

SQLite reports a lock held by another connection of the same process's shared cache (the
test server's in-memory database, say) at once, without its busy wait; it clears in
milliseconds. For a few writes, losing to it costs more than a short wait: a guard heartbeat
lost reads as a dead guard, a probe nonce not recorded raises a false decoy alarm. Anything
else (and a lock that lasts) is raised as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

T = TypeVar("T")

ATTEMPTS = 5
PAUSE = 0.05  # seconds, growing linearly: at most 0.5 s in all


def retry_when_locked(write: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """`write()`, retried while it fails with a "locked" OperationalError."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts:
                raise
            time.sleep(PAUSE * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
