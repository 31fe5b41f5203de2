"""What a long-running loop outside any request must do between its passes.

Django replaces a connection the server ended at the start of each request
(`close_old_connections`, from its request signals). A daemon's loop (the audit watcher, the
hot folder) has no requests: without this step, after a database restart or a failover the
loop's connection stays dead and every later pass fails on it until the process restarts.
"""

from __future__ import annotations

from django.db import connections


def drop_dead_connections() -> None:
    """`close_old_connections` for a loop: a connection that is unusable, obsolete or that
    failed is closed, so the next query opens a new one (on the promoted server, when
    DATABASE_URL lists several). Never inside a transaction (a caller's, or a test's):
    closing there would end it."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
