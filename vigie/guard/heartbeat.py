"""The dead man's switch: the guard says it is alive, and the portal notices when it stops.

A guard that died is worse than none: everyone believes the perimeter is watched. So the
guard daemon calls `beat()` every minute. The beat is written where the portal reads it
(`GuardState.last_heartbeat`, so administrators get a red banner when it goes stale) and,
if a URL is configured, POSTed to an outside monitor (a healthchecks-style endpoint), which
notices the silence even when the whole machine is gone.

The silence is also recorded afterwards: a guard that starts raises an alert for the time
nobody watched ("the guard was not running from … to …"), from the durable trace its
predecessor left, its `guard.stopped` audit event if it stopped cleanly, else its last beat
(so the start of a gap after a kill is known to within one heartbeat interval).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.request
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.alerts.models import Alert
from vigie.alerts.services import raise_alert
from vigie.audit.log import record
from vigie.audit.models import AuditEvent
from vigie.guard.models import GuardHost, GuardState, MaintenanceWindow, this_host
from vigie.guard.windows import format_duration
from vigie.lib.locked import retry_when_locked

logger = logging.getLogger(__name__)

# The alert kinds the guard raises; also what the guard page lists for acknowledgement.
GUARD_ALERT_PREFIXES = ("guard.", "maintenance.")


def open_guard_alerts() -> QuerySet[Alert]:
    """Unacknowledged alerts about the perimeter."""
    kinds = Q()
    for prefix in GUARD_ALERT_PREFIXES:
        kinds |= Q(kind__startswith=prefix)
    return Alert.objects.filter(kinds, acknowledged_at__isnull=True)


def beat(url: str = "", *, timeout: float = 5) -> None:
    """Record that the guard is alive and, if `url` is set, tell the outside monitor.

    Never raises: a monitor that is down, or a database hiccup, must not kill the guard
    (that would turn a small problem into the silence this switch exists to catch).
    """
    now = timezone.now()
    payload: dict[str, Any] = {
        "status": "alive",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": now.isoformat(),
    }
    try:
        _record_beat(now, host=payload["host"], pid=payload["pid"])
        state = GuardState.objects.get(pk=GuardState.SINGLETON)
        payload["lockdown"] = state.lockdown
        payload["open_windows"] = MaintenanceWindow.objects.open().count()
        payload["open_alerts"] = open_guard_alerts().count()
    except DatabaseError:
        # The guard is alive but the portal cannot see it: the monitor should hear both.
        logger.exception("heartbeat: cannot write the guard state")
        payload.update(status="degraded", lockdown=None, open_windows=None, open_alerts=None)
    if url:
        _post(url, payload, timeout=timeout)


def _record_beat(now: datetime, *, host: str, pid: int) -> None:
    retry_when_locked(lambda: _write_beat(now, host=host, pid=pid))


def _write_beat(now: datetime, *, host: str, pid: int) -> None:
    # A column update, not `state.save()`: the guard may engage lockdown (or an admin clear
    # it) between our read and our write, and a full-row save would undo that change.
    fields = {"last_heartbeat": now, "guard_pid": pid, "guard_host": host[:200]}
    if not GuardState.objects.filter(pk=GuardState.SINGLETON).update(**fields):
        GuardState.get()
        GuardState.objects.filter(pk=GuardState.SINGLETON).update(**fields)
    # Each host's own row too: on a group a dead guard must show even while another beats.
    GuardHost.objects.update_or_create(
        host=host[:200], defaults={"pid": pid, "last_heartbeat": now}
    )


def _post(url: str, payload: dict[str, Any], *, timeout: float) -> None:
    if not url.startswith(("https://", "http://")):
        logger.error("heartbeat: %r is not an http(s) URL; not sent", url)
        return
    request = urllib.request.Request(  # noqa: S310 - scheme checked just above
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "vigie-guard"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(1024)
    except Exception:  # any failure (refused, timeout, HTTP error, bad TLS) is only logged
        logger.warning("heartbeat: delivery to %s failed", url, exc_info=True)


def silence_seconds(now: datetime | None = None) -> float | None:
    """Seconds since the guard's last beat; None if it never beat."""
    last = (
        GuardState.objects.filter(pk=GuardState.SINGLETON)
        .values_list("last_heartbeat", flat=True)
        .first()
    )
    return elapsed(last, now)


def elapsed(last: datetime | None, now: datetime | None = None) -> float | None:
    if last is None:
        return None
    return max(((now or timezone.now()) - last).total_seconds(), 0.0)


def is_silent(silence: float | None) -> bool:
    """A guard that never beat is as silent as a dead one: nobody is watching either way."""
    return silence is None or silence > settings.VIGIE_GUARD_SILENCE_SECONDS


def guard_is_silent(now: datetime | None = None) -> bool:
    return is_silent(silence_seconds(now))


def _last_audit(action: str, host: str | None = None) -> datetime | None:
    events = AuditEvent.objects.filter(action=action)
    if host is not None:
        # Events of guards from before hosts were recorded count for every host: there was
        # one guard then.
        events = events.filter(Q(extra__host=host) | ~Q(extra__has_key="host"))
    moment: datetime | None = events.order_by("-seq").values_list("at", flat=True).first()
    return moment


def _last_signs(host: str) -> tuple[datetime | None, datetime | None, datetime | None, bool]:
    """This host's last beat, start and stop, and whether they are per host.

    Per host once any guard beat into `GuardHost` (a group: another host's beat says nothing
    about this one's firewall); before that, the installation's one guard, as it always was.
    """
    if GuardHost.objects.exists():
        beat_at = GuardHost.objects.filter(host=host).values_list("last_heartbeat", flat=True)
        return (
            beat_at.first(),
            _last_audit("guard.started", host),
            _last_audit("guard.stopped", host),
            True,
        )
    last_beat = (
        GuardState.objects.filter(pk=GuardState.SINGLETON)
        .values_list("last_heartbeat", flat=True)
        .first()
    )
    return last_beat, _last_audit("guard.started"), _last_audit("guard.stopped"), False


def record_silence(now: datetime | None = None) -> Alert | None:
    """At a guard's start: alert and audit the time the previous guard left unwatched.

    None when no guard ever ran here. Called before this guard writes anything (its own
    start event and first beat would hide the previous one's end).
    """
    now = now or timezone.now()
    host = this_host()
    last_beat, started, stopped, per_host = _last_signs(host)
    alive = max((t for t in (last_beat, started) if t is not None), default=None)
    clean = stopped is not None and (alive is None or stopped >= alive)
    since = stopped if clean else alive
    if since is None:
        return None
    if since > now:  # clock skew: say nothing rather than a negative gap
        return None
    values = {
        "start": timezone.localtime(since).strftime("%Y-%m-%d %H:%M:%S %Z"),
        "end": timezone.localtime(now).strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration": format_duration(round((now - since).total_seconds())),
    }
    if clean:
        summary = (
            _(
                "The guard was not running from %(start)s to %(end)s (%(duration)s): it had "
                "been stopped, and nothing watched the perimeter meanwhile."
            )
            % values
        )
    else:
        summary = (
            _(
                "The guard was not running from %(start)s to %(end)s (%(duration)s): it ended "
                "without stopping (killed, crashed, or the machine went down) after its last "
                "heartbeat, and nothing watched the perimeter meanwhile."
            )
            % values
        )
    details = {
        "from": since.isoformat(),
        "to": now.isoformat(),
        "seconds": round((now - since).total_seconds()),
        "stopped_cleanly": clean,
        "last_heartbeat": last_beat.isoformat() if last_beat else None,
        "host": host,
    }
    try:
        record("guard.silence", reason=summary, extra=details)
    except Exception:  # the alert below must go out whatever happened to the audit
        logger.exception("heartbeat: could not audit the guard's silence")
    return raise_alert(
        "guard.silence",
        # Stopped by someone (audited) or gone without a word: the latter is the alarming one.
        severity="warning" if clean else "critical",
        summary=summary,
        details=details,
        dedupe_key=f"guard.silence:{host}:{since.isoformat()}"
        if per_host
        else f"guard.silence:{since.isoformat()}",
    )
