"""The PostgreSQL backend skips Django's per-request health check only right after a clean
request on the same connection with nothing waiting on its socket; after an idle second, an
error, a new connection or bytes from the server it checks as Django does, so a connection the
server ended (a restart, a failover) is replaced before the request needs it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections

from vigie.lib.postgresql import base
from vigie.lib.postgresql.base import DatabaseWrapper

pytestmark = pytest.mark.django_db


@pytest.fixture
def wrapper(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DatabaseWrapper, list[int]]]:
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL backend's own behaviour")
    settings_dict: dict[str, Any] = dict(connections["default"].settings_dict)
    settings_dict.update(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=True)
    own = DatabaseWrapper(settings_dict, alias="health-check-test")
    checks: list[int] = []
    real = own.is_usable

    def counted() -> bool:
        checks.append(1)
        return real()

    monkeypatch.setattr(own, "is_usable", counted)
    try:
        yield own, checks
    finally:
        own.close()


def request(own: DatabaseWrapper, sql: str = "SELECT 1") -> Any:
    """One request's worth of use, with the calls Django's request signals make."""
    own.close_if_unusable_or_obsolete()
    try:
        with own.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()
    finally:
        own.close_if_unusable_or_obsolete()


def test_it_skips_the_check_right_after_a_clean_request(wrapper) -> None:
    own, checks = wrapper
    request(own)  # connects: nothing to check
    for _ in range(3):
        assert request(own) == (1,)
    assert checks == []


def test_it_checks_after_an_idle_moment(wrapper, monkeypatch: pytest.MonkeyPatch) -> None:
    own, checks = wrapper
    request(own)
    monkeypatch.setattr(base, "RECENTLY_HEALTHY_SECONDS", 0.0)
    assert request(own) == (1,)
    assert checks == [1]


def test_it_trusts_no_connection_after_an_error_without_a_check(wrapper) -> None:
    own, checks = wrapper
    request(own)
    with pytest.raises(DatabaseError):
        request(own, "SELECT * FROM no_such_table_here")
    # Django checks the connection at the end of a request that failed; that check, not the
    # failed request, is what lets the next one skip its own.
    assert checks == [1]
    assert request(own) == (1,)
    assert checks == [1]


def test_a_connection_killed_in_the_window_is_replaced_before_the_request_uses_it(
    wrapper,
) -> None:
    # A failover or restart ends the server's sessions: before, the next request on each
    # recently used connection failed (an error page) before Django reconnected.
    own, checks = wrapper
    request(own)
    (pid,) = request(own, "SELECT pg_backend_pid()")
    with connection.cursor() as cursor:
        # The timeout waits until the backend is gone, as a restart is over before clients
        # come back.
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    # The server's goodbye is on the socket: the check runs, fails, and Django reconnects.
    assert request(own) == (1,)
    assert checks == [1]
    (new_pid,) = request(own, "SELECT pg_backend_pid()")
    assert new_pid != pid


def test_anything_waiting_on_the_socket_means_a_check(wrapper) -> None:
    own, checks = wrapper
    request(own)
    own.close_if_unusable_or_obsolete()
    with own.cursor() as cursor:
        cursor.execute("LISTEN vigie_backend_test")
    own.close_if_unusable_or_obsolete()
    # Another session (its own, committed: the test's transaction would hold the message).
    notifier = DatabaseWrapper(dict(own.settings_dict), alias="notifier")
    try:
        with notifier.cursor() as cursor:
            cursor.execute("NOTIFY vigie_backend_test")
    finally:
        notifier.close()
    for _ in range(100):
        if not own._socket_quiet():
            break
        time.sleep(0.01)
    # Not a goodbye, but not silence either: the connection is checked, and passes.
    assert request(own) == (1,)
    assert checks == [1]
