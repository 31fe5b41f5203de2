"""`vigie guard run`: the daemon that watches the perimeter, apart from the web server.

One process per installation (an exclusive lock on `VIGIE_HOME/guard.lock`), four loops in
threads so a slow one never delays another:

- windows: every second, reconcile maintenance windows with the kernel; a window that ended
  has its connections flushed and is checked from outside;
- drift: at once on every `nft monitor` event, and a full snapshot at least every
  `snapshot_interval` (≤ 10 s);
- probe: an outside-in round every `probe_interval` (≤ 30 s);
- heartbeat: every `heartbeat_interval` (≤ 60 s), so a dead guard is noticed.

Each loop runs at a fixed rate: the next round is scheduled from the start of the previous
one (monotonic clock), less the time that round took, so that a change a round just missed
is *reported* within one interval, not one interval plus the length of a round.

At start the guard records the time nobody watched (from the last sign of life of the
previous guard to now), then reinstalls its table. SIGTERM or SIGINT stops the loops, then
the process. The guard is not what keeps windows closed: the kernel expires them even when
this process is killed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from vigie.audit.log import record
from vigie.guard import heartbeat, nft, probe, probe_recheck, windows
from vigie.guard.drift import DriftWatcher
from vigie.guard.models import MaintenanceWindow, this_host
from vigie.guard.policy import Policy
from vigie.lib.shutdown import stop_on_signals

logger = logging.getLogger(__name__)

WINDOW_SWEEP_SECONDS = 1.0


class GuardAlreadyRunning(RuntimeError):
    pass


def next_start(started: float, interval: float, took: float) -> float:
    """When the round after one that started at `started` and took `took` seconds begins.

    From the previous start, not its end, so a slow round does not stretch the period (the
    listener alarm took 10.1 s at a 10 s interval when the wait began after each check). The
    round's own length is taken off too: the next round, taking about as long, then *ends*
    (and alarms) within one interval of this one's start. At most half an interval is taken
    off; a round longer than that is followed at once by the next.
    """
    return started + max(interval - took, interval / 2)


@contextmanager
def single_instance(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the life of the guard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise GuardAlreadyRunning(
                f"another guard is already running (pid {holder}, lock {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class Guard:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.stop = threading.Event()
        self.drift = DriftWatcher(policy)
        self.threads: list[threading.Thread] = []

    # --- the loops ---

    def _loop(
        self,
        name: str,
        step: Callable[[], None],
        interval: float,
        wake: threading.Event | None = None,
    ) -> None:
        """Run `step` every `interval` until stopped (at once if `wake` is set); an error is
        logged and retried, never fatal."""
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                step()
            except Exception:
                logger.exception("guard: %s failed; retrying", name)
                # A broken connection must not poison the next round.
                connection.close()
            finally:
                close_old_connections()
            self._wait_until(next_start(started, interval, time.monotonic() - started), wake)
        connection.close()

    def _wait_until(self, deadline: float, wake: threading.Event | None) -> None:
        if wake is None:
            self.stop.wait(max(deadline - time.monotonic(), 0.0))
            return
        # The drift loop: woken at once by the `nft monitor` thread.
        while not self.stop.is_set() and time.monotonic() < deadline:
            if wake.wait(timeout=min(0.2, max(deadline - time.monotonic(), 0.0))):
                # Let a burst of changes (one `nft -f` script is several events) settle.
                time.sleep(0.2)
                return

    def _verify_closed(self, window: MaintenanceWindow) -> bool | None:
        return probe_recheck.port_closed_from_outside(self.policy, window.port)

    def _sweep(self) -> None:
        windows.sweep(verify=self._verify_closed)

    def _check_drift(self) -> None:
        self.drift.changed.clear()
        self.drift.check()

    def _probe(self) -> None:
        probe.run_round(self.policy)

    def _beat(self) -> None:
        heartbeat.beat(self.policy.heartbeat_url)

    # --- life cycle ---

    def start(self) -> None:
        # Before anything this guard writes (its first heartbeat) hides the previous one's end.
        heartbeat.record_silence()
        nft.install(self.policy)
        record(
            "guard.started",
            extra={
                "host": this_host(),
                "pid": os.getpid(),
                "policy": self.policy.path,
                "ports": list(self.policy.public_ports),
            },
        )
        self.drift.start()
        loops: list[tuple[str, Callable[[], None], float, threading.Event | None]] = [
            ("heartbeat", self._beat, self.policy.heartbeat_interval, None),
            ("windows", self._sweep, WINDOW_SWEEP_SECONDS, None),
            ("drift", self._check_drift, self.policy.snapshot_interval, self.drift.changed),
        ]
        if self.policy.probe_base_urls:
            loops.append(("probe", self._probe, self.policy.probe_interval, None))
        for name, step, interval, wake in loops:
            thread = threading.Thread(
                target=self._loop,
                args=(name, step, interval, wake),
                name=f"guard-{name}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
        logger.info("guard: watching ports %s", ", ".join(map(str, self.policy.public_ports)))

    def shutdown(self, timeout: float = 30) -> None:
        self.stop.set()
        self.drift.stop()
        for thread in self.threads:
            thread.join(timeout)
        try:
            record("guard.stopped", extra={"host": this_host(), "pid": os.getpid()})
        except Exception:
            logger.exception("guard: could not audit the stop")


def run(policy: Policy, *, install_signals: bool = True) -> None:
    """Run the guard until SIGTERM/SIGINT (the management command's body)."""
    lock = Path(settings.VIGIE_HOME) / "guard.lock"
    with single_instance(lock):
        nft.check_available()
        guard = Guard(policy)
        with stop_on_signals(guard.stop.set) if install_signals else nullcontext():
            guard.start()
            try:
                while not guard.stop.wait(1.0):
                    pass
            finally:
                guard.shutdown()
