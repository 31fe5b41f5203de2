"""The PostgreSQL backend skips Django's per-request health check only right after a clean
request on the same connection; after an idle second, an error or a new connection it checks
as Django does, and a connection killed inside the window costs one failed request, never
a wrong answer."""

from __future__ import annotations

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


def test_a_connection_killed_in_the_window_fails_one_request_then_recovers(wrapper) -> None:
    own, _checks = wrapper
    request(own)
    (pid,) = request(own, "SELECT pg_backend_pid()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    # Within the window the dead connection is not checked: this request fails (an error,
    # no answer) ...
    with pytest.raises(DatabaseError):
        request(own)
    # ... and Django closes it at the request's end: the next one reconnects and answers.
    assert request(own) == (1,)
    (new_pid,) = request(own, "SELECT pg_backend_pid()")
    assert new_pid != pid
