"""Django's PostgreSQL backend with one change: a connection that served a request cleanly
a moment ago is not asked `SELECT 1` before the next one.

With CONN_HEALTH_CHECKS (on, for persistent connections) Django checks each connection
with a round trip at the first query of every request. On a document read that is one
round trip in five on the request thread, about 0.25 ms of CPU for nothing when the same
connection answered every statement of the previous request a few milliseconds earlier.
Here the check is skipped when the connection's previous request ended less than
`RECENTLY_HEALTHY_SECONDS` ago having run at least one statement and no error; otherwise
(idle for longer, an error, a new connection) Django's check runs as before.

What this gives up: a server-side disconnection in that second (a restart, a killed
backend) is found by the request's first statement instead of the check, so that one
request fails (closed: an error, never a byte it should not have) and Django closes the
connection at its end, as it does after any error; the next request reconnects. The same
window already exists between Django's check and the statement after it.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

RECENTLY_HEALTHY_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    # monotonic() when a request last ended on this connection after a clean use.
    _healthy_at: float | None = None

    def close_if_unusable_or_obsolete(self) -> None:
        # Called at both ends of every request.
        failed = self.errors_occurred
        # Django sets `health_check_done` once a request's first statement ran (checked or
        # skipped) or its end-of-request check after an error passed: a proven connection.
        used_cleanly = self.connection is not None and self._checked() and not failed
        super().close_if_unusable_or_obsolete()
        if self.connection is None or failed:
            # After an error the next request is checked, whatever Django found meanwhile.
            self._healthy_at = None
        elif used_cleanly:
            self._healthy_at = time.monotonic()

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and getattr(self, "health_check_enabled", False)
            and not self._checked()
            and self._healthy_at is not None
            and time.monotonic() - self._healthy_at < RECENTLY_HEALTHY_SECONDS
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _checked(self) -> bool:
        # Not in django-stubs' types.
        return bool(getattr(self, "health_check_done", False))
