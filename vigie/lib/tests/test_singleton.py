"""Cluster-wide singletons (vigie/lib/singleton.py), on whichever database the suite runs.

Real processes race for the lock (PostgreSQL advisory locks on their own sessions, or the
lock file under VIGIE_HOME on SQLite); a holder killed -9 hands the lock over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from vigie.audit.head import APPEND_LOCK
from vigie.lib import singleton
from vigie.lib.singleton import Singleton

# Real sessions and commits (the flush after each test needs the audit triggers handled).
pytestmark = pytest.mark.usefixtures("audit_committing")

# A process that takes the lock NAME, says whether it got it, does the "work" (a line in
# WORK_FILE) only if it did, then waits to be killed or for its stdin to close.
_CONTENDER = """
import os, sys
import django
django.setup()
from vigie.lib.singleton import Singleton
lock = Singleton(sys.argv[1])
held = lock.acquire()
if held:
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{os.getpid()}\\n".encode())
    os.close(fd)
print("held" if held else "skipped", flush=True)
sys.stdin.read()
lock.release()
"""


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vigie.settings",
        "VIGIE_MODE": "test",
        "VIGIE_HOME": str(settings.VIGIE_HOME),
        "VIGIE_KEYS_DIR": str(settings.VIGIE_KEYS_DIR),
    }
    env.pop("DATABASE_URL", None)
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        user = db.get("USER") or "postgres"
        env["DATABASE_URL"] = (
            f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
            f"/{db['NAME']}"
        )
    return env


def _start(name: str, work: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CONTENDER, name, str(work)],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def contenders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def _answer(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def _eventually(lock: Singleton, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if lock.acquire():
            return True
        time.sleep(0.1)
    return False


def test_it_derives_the_same_id_from_a_name_everywhere() -> None:
    # A constant: every node, every Python version, every run computes this very key.
    assert singleton.lock_id("audit-watch") == singleton.lock_id("audit-watch")
    assert singleton.lock_id("audit-watch") == -7114692243925752557
    keys = {singleton.lock_id(name) for name in singleton.KNOWN}
    assert len(keys) == len(singleton.KNOWN)
    assert APPEND_LOCK not in keys
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_it_lets_one_of_two_holders_in_and_the_other_after_release() -> None:
    first, second = Singleton("backup"), Singleton("backup")
    try:
        assert first.acquire() is True
        assert first.acquire() is True  # still ours on the next pass
        assert second.acquire() is False
        with singleton.singleton("backup") as held:
            assert held is False
        first.release()
        assert second.acquire() is True
        assert Singleton("key-rotation").acquire() is True  # another name, another lock
    finally:
        first.release()
        second.release()


def test_it_lets_exactly_one_of_racing_processes_do_the_work(
    tmp_path: Path, contenders: list[subprocess.Popen[str]]
) -> None:
    work = tmp_path / "work"
    contenders.extend(_start("decoys", work) for _ in range(4))
    answers = sorted(_answer(process) for process in contenders)
    assert answers == ["held", "skipped", "skipped", "skipped"]
    assert len(work.read_text().splitlines()) == 1


def test_it_hands_the_lock_over_when_the_holder_is_killed(
    tmp_path: Path, contenders: list[subprocess.Popen[str]]
) -> None:
    holder = _start("audit-watch", tmp_path / "work")
    contenders.append(holder)
    assert _answer(holder) == "held"
    mine = Singleton("audit-watch")
    try:
        assert mine.acquire() is False
        [listed] = [h for h in singleton.holders() if h.name == "audit-watch"]
        assert listed.node.endswith(f":{holder.pid}")
        assert listed.node.startswith("vigie@")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert _eventually(mine) is True
        [listed] = [h for h in singleton.holders() if h.name == "audit-watch"]
        assert listed.node == singleton.node_name()
    finally:
        mine.release()
    assert [h for h in singleton.holders() if h.name == "audit-watch"] == []


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").split(":")[0] not in {"postgres", "postgresql"},
    reason="PostgreSQL only: a lock file cannot be taken from under its holder",
)
def test_it_notices_a_lost_session_and_takes_the_lock_again() -> None:
    lock, other = Singleton("backup"), Singleton("backup")
    try:
        assert lock.acquire() is True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                [singleton.node_name()],
            )
        # The session is gone and so is the lock: the holder must not believe it still works.
        assert _eventually(other) is True
        assert lock.acquire() is False
        other.release()
        assert lock.acquire() is True
    finally:
        lock.release()
        other.release()


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").split(":")[0] not in {"postgres", "postgresql"},
    reason="PostgreSQL only: application_name is a PostgreSQL session's",
)
def test_every_session_says_which_node_it_comes_from() -> None:
    import socket

    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        row = cursor.fetchone()
    assert row is not None
    assert row[0] == f"vigie@{socket.gethostname()}"[:63]
