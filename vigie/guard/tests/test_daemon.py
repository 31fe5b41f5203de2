"""The guard daemon's loops: a fixed rate whatever a round takes, and the silence recorded
by the next guard when one dies."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.guard.daemon import Guard, next_start
from vigie.guard.models import GuardState
from vigie.guard.policy import Listener, Policy

PORTAL = Listener("portal", "0.0.0.0", 8443, "public", sources=("192.168.10.0/24",))
POLICY = Policy(listeners=(PORTAL,), maintenance_ports=(8443,), snapshot_interval=0.5)


def test_the_next_round_is_scheduled_from_the_previous_start() -> None:
    # A round of 0.3 s at a 10 s interval: the next starts 9.7 s after this one started,
    # so it ends (and alarms) 10 s after; never 10 s after this one *ended*.
    assert next_start(100.0, 10.0, 0.3) == pytest.approx(109.7)
    assert next_start(100.0, 10.0, 0.0) == pytest.approx(110.0)
    # A slow round takes off at most half the interval.
    assert next_start(100.0, 10.0, 8.0) == pytest.approx(105.0)


def _run_loop(
    guard: Guard, step: Callable[[], None], interval: float, wake: threading.Event | None = None
) -> threading.Thread:
    thread = threading.Thread(target=guard._loop, args=("test", step, interval, wake))
    thread.start()
    return thread


def test_a_slow_round_does_not_stretch_the_period() -> None:
    # The regression: the wait began after each round, so the period was interval + round.
    guard = Guard(POLICY)
    starts: list[float] = []

    def slow_round() -> None:
        starts.append(time.monotonic())
        if len(starts) >= 4:
            guard.stop.set()
        time.sleep(0.3)

    _run_loop(guard, slow_round, 1.0).join(10)

    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    # interval - round = 0.7 s; the old schedule could not go below 1.3 s.
    assert all(0.65 <= gap < 1.0 for gap in gaps), gaps


def test_a_wake_starts_the_next_round_at_once() -> None:
    guard = Guard(POLICY)
    wake = threading.Event()
    starts: list[float] = []

    def round_() -> None:
        starts.append(time.monotonic())
        if len(starts) >= 2:
            guard.stop.set()

    thread = _run_loop(guard, round_, 30.0, wake)
    time.sleep(0.3)
    wake.set()
    thread.join(10)

    assert len(starts) == 2
    assert starts[1] - starts[0] < 2.0


def test_a_failing_round_is_retried_at_the_same_rate() -> None:
    guard = Guard(POLICY)
    starts: list[float] = []

    def failing() -> None:
        starts.append(time.monotonic())
        if len(starts) >= 3:
            guard.stop.set()
        raise RuntimeError("nft vanished")

    _run_loop(guard, failing, 0.2).join(10)

    assert len(starts) == 3


@pytest.mark.netns
@pytest.mark.usefixtures("audit_committing")
def test_a_restarted_guard_records_the_time_nobody_watched(netns: str) -> None:
    first = Guard(POLICY)
    first.start()
    first.shutdown(timeout=10)
    assert not Alert.objects.filter(kind="guard.silence").exists()
    stopped = AuditEvent.objects.filter(action="guard.stopped").latest("seq")

    second = Guard(POLICY)
    try:
        second.start()
    finally:
        second.shutdown(timeout=10)

    alert = Alert.objects.get(kind="guard.silence")
    assert alert.severity == "warning"  # it was stopped, cleanly and on the record
    assert alert.details["from"] == stopped.at.isoformat()
    assert "was not running from" in alert.summary
    # Recorded before the new guard started (its start must not hide the gap's end).
    silence = AuditEvent.objects.get(action="guard.silence")
    started = AuditEvent.objects.filter(action="guard.started").latest("seq")
    assert silence.seq < started.seq
    assert GuardState.get().last_heartbeat is not None
