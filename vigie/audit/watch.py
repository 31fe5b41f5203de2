"""`vigie audit watch`: the periodic checkpoint writer and the runner of the anomaly rules.

Each pass applies `rules.scan` to the new events; every `VIGIE_AUDIT_CHECKPOINT_SECONDS` (on
its own clock, whatever the traffic) it signs the head if events lie past the last signed
checkpoint (`checkpoints.anchor_tail`). After each pass it writes its heartbeat, one JSON
object replaced atomically and fsynced in `VIGIE_AUDIT_WATCH_HEARTBEAT_FILE`, outside the
database, so that `vigie check` fails when the watcher is stopped or stuck (with it stop the
rules and the anchoring of the tail). Each pass also writes the counts of anonymous
refusals whose minute is over (`refusals.flush`). Runs as `deploy/systemd/vigie-audit-watch.service`.

On a group of nodes every node runs it, and exactly one does the work: a pass runs only
while this process holds the cluster-wide singleton `audit-watch` (vigie/lib/singleton.py).
The others stand by, still beating (they are alive), and one takes over when the holder
dies; it restarts its rules from their window, as after a restart, and anchors at once.

A database that goes away (a restart, a failover to a promoted standby) does not end the
watcher: with no request cycle to do it, each pass first drops a connection the server ended,
as Django does between requests, and a pass that fails on the database is given up, without
a heartbeat (out of reach is not alive), and tried again at the next interval.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from vigie.audit import checkpoints, refusals, rules
from vigie.audit.head import AuditHeadBehind, AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.lib import durable
from vigie.lib.dbconn import drop_dead_connections
from vigie.lib.singleton import AUDIT_WATCH, Singleton

logger = logging.getLogger(__name__)


def heartbeat_path() -> Path:
    return Path(settings.VIGIE_AUDIT_WATCH_HEARTBEAT_FILE)


def beat(position: int, *, now: datetime | None = None) -> None:
    """Durably record that the watcher completed a pass (atomic replace, file and folder fsynced)."""
    path = heartbeat_path()
    durable.make_private_dir(path.parent)
    body = {"at": (now or timezone.now()).isoformat(), "pid": os.getpid(), "seq": position}
    durable.write_new(path, [json.dumps(body, sort_keys=True).encode()], replace=True)


def last_beat() -> datetime | None:
    """When the watcher last completed a pass; None if never (or the file is unreadable)."""
    try:
        body = json.loads(heartbeat_path().read_bytes())
        at = datetime.fromisoformat(body["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return at if timezone.is_aware(at) else None


def silence_limit() -> timedelta:
    return timedelta(seconds=2 * settings.VIGIE_AUDIT_CHECKPOINT_SECONDS)


def start_position(thresholds: rules.Thresholds) -> int:
    # Start with the rules' window, so a restart does not miss a burst in progress.
    since = timezone.now() - timedelta(minutes=thresholds.window_minutes)
    first = AuditEvent.objects.filter(at__gte=since).order_by("seq").values_list("seq", flat=True)
    return max((first.first() or 1) - 1, 0)


def run(
    stop: threading.Event,
    *,
    interval: float,
    once: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Loop until `stop` is set (or one pass if `once`); return the last seq scanned."""
    thresholds = rules.thresholds_from_settings()
    position = 0
    anchored_at: float | None = None
    lock = Singleton(AUDIT_WATCH)
    holding = False
    try:
        while True:
            # Without it the first pass after a failover raised on the dead socket and the
            # watcher exited.
            drop_dead_connections()
            failed = False
            if lock.acquire():
                try:
                    if not holding:
                        # Taken over (or first pass): what the previous holder scanned is
                        # not known here, so start from the rules' window.
                        position = start_position(thresholds)
                        anchored_at = None
                        holding = True
                    position, anchored_at = _pass(position, anchored_at, thresholds, monotonic)
                except AuditHeadBehind:
                    raise  # an inconsistent chain is not an outage
                except (OperationalError, InterfaceError, AuditUnavailable) as exc:
                    # Out of reach mid-pass: not a reason to die. The position stays where
                    # the last complete pass left it; the lock says next time who works.
                    logger.warning("audit watch: database unreachable, pass given up: %s", exc)
                    failed = True
            else:
                holding = False
            if not failed and (holding or not lock.unreachable):
                # Standing by is alive; a database out of reach is not: no beat, so that
                # `vigie check` says nobody anchors the tail.
                beat(position)
            if once or stop.wait(interval):
                return position
    finally:
        lock.release()


def _pass(
    position: int,
    anchored_at: float | None,
    thresholds: rules.Thresholds,
    monotonic: Callable[[], float],
) -> tuple[int, float | None]:
    # Before the rules, so the denial rule sees the counts of the minute just over.
    refusals.flush()
    position = rules.scan(position, thresholds)
    if anchored_at is None or (
        monotonic() - anchored_at >= settings.VIGIE_AUDIT_CHECKPOINT_SECONDS
    ):
        checkpoints.anchor_tail()
        anchored_at = monotonic()
    return position, anchored_at
