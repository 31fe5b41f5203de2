"""The audit watcher outlives its database going away: a pass that fails on the database is
given up without a heartbeat, and a connection the server ended (a restart, a failover to a
promoted standby) is replaced before the next pass uses it. The failover drill found the
watcher dead after a promotion (tests/test_failover_drill.py)."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection

from vigie.audit import watch
from vigie.audit.checkpoints import read_checkpoints
from vigie.audit.log import record


@pytest.mark.django_db
def test_a_pass_that_loses_the_database_is_given_up_without_a_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record("document.read")
    real_pass = watch._pass
    calls: list[int] = []

    def cut_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(watch, "_pass", cut_once)
    watch.run(threading.Event(), interval=0, once=True)  # does not raise
    assert watch.last_beat() is None  # out of reach is not alive
    assert read_checkpoints()[0] == []

    watch.run(threading.Event(), interval=0, once=True)  # the database is back
    assert watch.last_beat() is not None
    assert [c.seq for c in read_checkpoints()[0]] == [1]


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="PostgreSQL only: a server that ends the watcher's connection",
)
def test_the_watcher_replaces_a_connection_the_server_ended(audit_committing: None) -> None:
    record("document.read")
    stop = threading.Event()
    passes: list[int] = []
    clock = iter(range(0, 10_000, 100))  # each pass a whole interval after the last: it signs

    def between_passes(timeout: float | None = None) -> bool:
        passes.append(1)
        if len(passes) == 1:
            # What a failover or a restart does to the watcher's idle connection.
            record("document.read")
            pid = connection.connection.info.backend_pid
            params: dict[str, Any] = {
                k: v for k, v in connection.get_connection_params().items() if v is not None
            }
            with psycopg.connect(**params, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            return False
        return True

    stop.wait = between_passes  # type: ignore[method-assign]
    # Two passes of one watcher: the second must not raise, and signs the new event.
    watch.run(stop, interval=0, monotonic=lambda: float(next(clock)))
    assert len(passes) == 2
    assert [c.seq for c in read_checkpoints()[0]] == [1, 2]
