from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import OperationalError

from vigie.lib import locked
from vigie.lib.locked import retry_when_locked


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locked, "PAUSE", 0)


def _failing(errors: list[Exception]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "written"

    return calls, write


def test_a_write_that_meets_a_lock_is_retried_until_it_goes_through() -> None:
    calls, write = _failing([OperationalError("database table is locked")] * 3)
    assert retry_when_locked(write) == "written"
    assert len(calls) == 4


def test_a_lock_that_lasts_is_raised() -> None:
    calls, write = _failing([OperationalError("database table is locked")] * 9)
    with pytest.raises(OperationalError):
        retry_when_locked(write, attempts=3)
    assert len(calls) == 3


def test_other_database_errors_are_not_retried() -> None:
    calls, write = _failing([OperationalError("no such table: x")])
    with pytest.raises(OperationalError):
        retry_when_locked(write)
    assert len(calls) == 1
