"""A daemon's loop gets a new connection after the server ended its own (a restart, a
failover), as a request would; without it the hot folder's files waited until a restart."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection

from vigie.lib import dbconn

postgres_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="PostgreSQL only: a server that ends the loop's connection",
)


def _terminate_own_backend() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    params: dict[str, Any] = {
        k: v for k, v in connection.get_connection_params().items() if v is not None
    }
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def _select_one() -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()


@postgres_only
def test_a_loop_reconnects_after_the_server_ended_its_connection(audit_committing: None) -> None:
    # audit_committing: a database outside a test transaction, whose audit table (append-only)
    # the end of the test does not try to empty.
    _terminate_own_backend()
    dbconn.drop_dead_connections()
    assert _select_one() == (1,)


@postgres_only
def test_without_the_step_the_dead_connection_stays_dead(audit_committing: None) -> None:
    # What the folder's loop did before: the error alone does not replace the connection.
    _terminate_own_backend()
    # Mid-"request": Django does not check again (an attribute django-stubs does not know).
    setattr(connection, "health_check_done", True)  # noqa: B010
    with pytest.raises(DatabaseError):
        _select_one()
    with pytest.raises(DatabaseError):
        _select_one()
    dbconn.drop_dead_connections()
    assert _select_one() == (1,)


def test_the_hot_folder_takes_the_step_before_each_scan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from vigie.intake.management.commands import _folder

    order: list[str] = []

    class Folder:
        stop = threading.Event()
        settle = 0.0

        def clock(self) -> float:
            return 0.0

        def scan(self) -> tuple[list[Any], int]:
            order.append("scan")
            if order.count("scan") == 2:
                self.stop.set()
            return [], 0

    monkeypatch.setattr(_folder, "drop_dead_connections", lambda: order.append("drop"))
    _folder._loop(Folder(), once=False, interval=0)  # type: ignore[arg-type]
    assert order == ["drop", "scan", "drop", "scan"]
