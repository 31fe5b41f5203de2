"""Two `vigie audit watch` processes, as on two nodes of a group: exactly one holds the
cluster-wide `audit-watch` lock (the other stands by); killed -9, the holder hands over, and
the survivor anchors the tail at once. On the suite's database (PostgreSQL advisory lock on
its own session, or the lock file under VIGIE_HOME on SQLite)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import VIGIE, System

pytestmark = pytest.mark.slow


def _holders(system: System) -> dict[str, str]:
    out = system.run(
        "shell",
        "-c",
        "from vigie.lib.singleton import holders; print({h.name: h.node for h in holders()})",
    ).stdout
    return dict(ast.literal_eval(out.strip().splitlines()[-1]))


def _python(system: System, code: str) -> str:
    return system.run("shell", "-c", code).stdout.strip().splitlines()[-1]


def _until(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


@pytest.fixture
def watchers(system: System) -> Iterator[list[subprocess.Popen[str]]]:
    started = [
        system.popen(
            [*VIGIE, "audit", "watch", "--interval", "0.2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_one_of_two_watchers_works_and_the_other_takes_over_after_kill_9(
    system: System, watchers: list[subprocess.Popen[str]]
) -> None:
    pids = {process.pid: process for process in watchers}
    assert _until(lambda: "audit-watch" in _holders(system))
    holder_node = _holders(system)["audit-watch"]
    holder_pid = int(holder_node.rsplit(":", 1)[1])
    assert holder_pid in pids  # one of the two, and only one name for the lock
    [survivor_pid] = [pid for pid in pids if pid != holder_pid]
    assert pids[survivor_pid].poll() is None  # the other one is running, standing by

    os.kill(holder_pid, signal.SIGKILL)
    pids[holder_pid].wait(10)
    seq = int(
        _python(system, "from vigie.audit.log import record; print(record('test.event').seq)")
    )

    # The survivor takes the lock within a few of its passes...
    assert _until(lambda: _holders(system).get("audit-watch", "").endswith(f":{survivor_pid}"))
    # ...and, having just taken over, anchors the tail at once (not a minute later).
    signed = "from vigie.audit.checkpoints import last_signed_seq; print(last_signed_seq())"
    assert _until(lambda: int(_python(system, signed)) >= seq, seconds=15)
