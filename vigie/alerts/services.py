"""`raise_alert()` and `acknowledge()`.

`raise_alert` never fails and never blocks its caller: it is called when something already
went wrong (a vault error, an emergency access, a touched canary). The alert is stored (or,
when the same problem is still open, its count bumped), then handed to a background thread
that delivers it to each configured channel — email (`VIGIE_ALERT_EMAILS`), a JSON webhook
(`VIGIE_ALERT_WEBHOOK_URL`), syslog (`VIGIE_ALERT_SYSLOG`) — each rate-limited to
`VIGIE_ALERT_RATE_PER_MINUTE` deliveries per process. If the database itself is down, the
alert is still delivered, unsaved. Delivery waits for the caller's transaction to commit: an
alert about something rolled back is not sent.

What leaves the building never names a patient: the stored alert (shown on the /alerts pages
to authorised users) keeps the IPP, but e-mail, webhook and syslog receive `patient_ref`, the
patient's opaque public id, and neither the IPP nor a name.

Repeats are delivered at counts 1, 10, 100, 1000…: the first tells, the next say it goes on.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from vigie.alerts.models import Alert, Audience, Severity

if TYPE_CHECKING:
    from vigie.accounts.models import User

logger = logging.getLogger(__name__)

# Kinds about the machine and the perimeter go to IT; everything else to the DPO.
_ADMIN_PREFIXES = ("guard.", "vault.", "intake.", "maintenance.", "audit.", "system.")


def raise_alert(
    kind: str,
    *,
    severity: str,
    summary: str,
    details: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    audience: str | None = None,
) -> Alert:
    if severity not in Severity.values:
        raise ValueError(f"alert severity {severity!r} is not one of {', '.join(Severity.values)}")
    key = (dedupe_key or f"{kind}:{summary}")[:200]
    if audience is None:
        audience = Audience.ADMIN if kind.startswith(_ADMIN_PREFIXES) else Audience.AUDITOR
    details = dict(details or {})
    if details.get("patient_ipp") and "patient_ref" not in details:
        details["patient_ref"] = _patient_ref(str(details["patient_ipp"]))
    alert = Alert(
        kind=kind[:64],
        severity=severity,
        summary=summary[:500],
        details=json.loads(json.dumps(details, default=str)),
        dedupe_key=key,
        audience=audience,
    )
    try:
        alert = _store(alert)
    except DatabaseError:
        logger.exception("alert %s could not be stored; delivering it anyway", kind)
    if _worth_delivering(alert.count):
        payload = _payload(alert)
        try:
            transaction.on_commit(lambda: _deliverer().submit(payload), robust=True)
        except Exception:  # a broken transaction state must not stop the alert
            _deliverer().submit(payload)
    return alert


def _store(alert: Alert) -> Alert:
    for _attempt in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                updated = Alert.objects.filter(
                    dedupe_key=alert.dedupe_key, acknowledged_at__isnull=True
                ).update(count=F("count") + 1, last_seen=now, severity=alert.severity)
                if updated:
                    return Alert.objects.get(
                        dedupe_key=alert.dedupe_key, acknowledged_at__isnull=True
                    )
                alert.first_seen = alert.last_seen = now
                alert.save()
                return alert
        except IntegrityError:
            continue  # another process opened the same alert between our update and insert
    return alert


def _worth_delivering(count: int) -> bool:
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


def acknowledge(alert: Alert, user: User) -> Alert:
    """Close the alert in the name of `user`; the acknowledgement is an audit event."""
    from vigie.audit.log import record

    with transaction.atomic():
        current = Alert.objects.select_for_update().get(pk=alert.pk)
        if current.acknowledged_at is None:
            current.acknowledged_by = user.get_username()
            current.acknowledged_at = timezone.now()
            current.save(update_fields=["acknowledged_by", "acknowledged_at"])
            record(
                "alert.acknowledge",
                actor=user,
                extra={"alert_id": current.pk, "kind": current.kind, "count": current.count},
            )
    return current


def _patient_ref(ipp: str) -> str:
    """The patient's public id: meaningless outside Vigie, followed inside it by an auditor."""
    # Looked up by name, not imported: alerts sit beside records, not above them.
    from django.apps import apps

    try:
        public_id = (
            apps.get_model("records", "Patient")
            .objects.filter(ipp=ipp)
            .values_list("public_id", flat=True)
            .first()
        )
    except DatabaseError:
        public_id = None
    return public_id or "unknown"


# Kept in the stored alert, never handed to a channel: they name or identify the patient.
WITHHELD_FROM_CHANNELS = frozenset({"patient_ipp", "patient_name", "patient"})


def _payload(alert: Alert) -> dict[str, Any]:
    details = {k: v for k, v in alert.details.items() if k not in WITHHELD_FROM_CHANNELS}
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "severity": alert.severity,
        "summary": alert.summary,
        "details": details,
        "count": alert.count,
        "audience": alert.audience,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
    }


# --- channels -------------------------------------------------------------------------------


def _email(payload: dict[str, Any]) -> None:
    recipients = list(settings.VIGIE_ALERT_EMAILS)
    if not recipients:
        return
    body = json.dumps(payload, indent=2, ensure_ascii=False)
    send_mail(
        f"[Vigie] {payload['severity']}: {payload['summary']}"[:200],
        body,
        None,
        recipients,
    )


def _webhook(payload: dict[str, Any]) -> None:
    url = settings.VIGIE_ALERT_WEBHOOK_URL
    if not url:
        return
    if not url.startswith(("https://", "http://")):
        raise ValueError("VIGIE_ALERT_WEBHOOK_URL must be an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - scheme checked just above
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "vigie-alerts"},
        method="POST",
    )
    timeout = settings.VIGIE_ALERT_WEBHOOK_TIMEOUT
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        response.read(1024)


_syslog_handlers: dict[str, logging.Handler] = {}


def _syslog(payload: dict[str, Any]) -> None:
    target = settings.VIGIE_ALERT_SYSLOG
    if not target:
        return
    handler = _syslog_handlers.get(target)
    if handler is None:
        if target.startswith("/"):
            address: str | tuple[str, int] = target
        else:
            host, _, port = target.rpartition(":")
            address = (host or "localhost", int(port or "514"))
        handler = logging.handlers.SysLogHandler(address=address)
        handler.setFormatter(logging.Formatter("vigie: %(message)s"))
        _syslog_handlers[target] = handler
    level = {"info": logging.INFO, "warning": logging.WARNING}.get(
        payload["severity"], logging.CRITICAL
    )
    record = logging.LogRecord(
        "vigie.alerts", level, __file__, 0, "%s", (json.dumps(payload),), None
    )
    handler.emit(record)


CHANNELS: dict[str, Callable[[dict[str, Any]], None]] = {
    "email": _email,
    "webhook": _webhook,
    "syslog": _syslog,
}


class _RateLimiter:
    def __init__(self) -> None:
        self.sent: dict[str, deque[float]] = {}

    def allow(self, channel: str) -> bool:
        now = time.monotonic()
        window = self.sent.setdefault(channel, deque())
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= settings.VIGIE_ALERT_RATE_PER_MINUTE:
            return False
        window.append(now)
        return True


class _Deliverer:
    """A background thread, so a slow mail server or webhook never holds up a request."""

    def __init__(self) -> None:
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.limiter = _RateLimiter()
        self.thread = threading.Thread(target=self._run, name="vigie-alerts", daemon=True)
        self.thread.start()

    def submit(self, payload: dict[str, Any]) -> None:
        self.queue.put(payload)

    def _run(self) -> None:
        while True:
            payload = self.queue.get()
            try:
                for name, channel in CHANNELS.items():
                    if not self.limiter.allow(name):
                        logger.warning("alert channel %s rate-limited: %s", name, payload["kind"])
                        continue
                    try:
                        channel(payload)
                    except Exception:  # one failing channel must not silence the others
                        logger.exception("alert channel %s failed for %s", name, payload["kind"])
            finally:
                self.queue.task_done()


_lock = threading.Lock()
_state: dict[int, _Deliverer] = {}


def _deliverer() -> _Deliverer:
    pid = os.getpid()
    current = _state.get(pid)
    if current is None:
        with _lock:
            current = _state.get(pid)
            if current is None:
                _state.clear()
                current = _state[pid] = _Deliverer()
    return current


def wait_for_deliveries() -> None:
    """Block until every queued alert went through its channels (tests, shutdown)."""
    _deliverer().queue.join()
