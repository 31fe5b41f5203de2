"""Anomaly rules over the audit trail, feeding `raise_alert`.

`scan(after_seq)` looks at the events appended since `after_seq` and, for the actors and
addresses in them, at a sliding window of recent history:

* many patients: one actor opened documents of ≥ N distinct patients within T minutes;
* crawler: one actor made ≥ R reads within one minute (no human reads that fast; a lab
  history page, which reads every report of its patient in one request, counts as one);
* repeated denials: ≥ D denied requests from one actor or one address within T minutes
  (an event of counted refusals stands for its `count`);
* off-hours download: a download between 20:00 and 07:00 (clinic time);
* canary touched: anyone opened a decoy record — always critical.

Emergency (break-the-glass) access is alerted by the portal when granted (`emergency.access`).
`vigie audit watch` runs `scan` in a loop. Alerts are deduplicated per actor (or address),
so a burst is one alert with a count, not a flood.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from vigie.alerts.services import raise_alert
from vigie.audit import tags
from vigie.audit.models import AuditEvent
from vigie.audit.refusals import weight

READ_ACTIONS = (tags.DOCUMENT_READ, tags.DOCUMENT_DOWNLOAD)


@dataclass(frozen=True)
class Thresholds:
    patients: int = 20
    window_minutes: int = 10
    reads_per_minute: int = 60
    denials: int = 5
    workday_start_hour: int = 7
    workday_end_hour: int = 20


def scan(after_seq: int, thresholds: Thresholds | None = None, *, limit: int = 10_000) -> int:
    """Apply the rules to events after `after_seq`; return the last seq looked at."""
    rules = thresholds or Thresholds()
    new_events = list(AuditEvent.objects.filter(seq__gt=after_seq).order_by("seq")[:limit])
    if not new_events:
        return after_seq
    window_start = timezone.now() - timedelta(minutes=rules.window_minutes)
    actors: set[int] = set()
    addresses: set[str] = set()
    for event in new_events:
        if event.actor_id is not None:
            actors.add(event.actor_id)
        if event.outcome == "denied" and event.source_ip:
            addresses.add(event.source_ip)
        _check_event(event, rules)
    recent = AuditEvent.objects.filter(at__gte=window_start)
    for actor_id in sorted(actors):
        _check_actor(recent, actor_id, rules)
    for address in sorted(addresses):
        _check_address(recent, address, rules)
    return new_events[-1].seq


def _check_event(event: AuditEvent, rules: Thresholds) -> None:
    """The rules one event breaks on its own: a decoy touched, a download off hours."""
    if event.action == tags.CANARY_TOUCHED:
        raise_alert(
            "canary.touched",
            severity="critical",
            summary=f"Decoy record opened by {event.actor_username or event.source_ip or '?'}",
            details=_details(event),
            dedupe_key=f"canary:{event.actor_username}:{event.source_ip}",
            audience="auditor",
        )
    elif event.action == tags.DOCUMENT_DOWNLOAD and event.outcome == "success":
        hour = timezone.localtime(event.at).hour
        if not rules.workday_start_hour <= hour < rules.workday_end_hour:
            raise_alert(
                "access.off_hours_download",
                severity="warning",
                summary=f"{event.actor_username} downloaded a document at {hour:02d}h",
                details=_details(event),
                dedupe_key=f"off-hours:{event.actor_id}:{timezone.localdate(event.at)}",
            )


def _check_actor(recent: QuerySet[AuditEvent], actor_id: int, rules: Thresholds) -> None:
    """One user over the window: too many patients, crawler-like reads, repeated denials."""
    mine = recent.filter(actor_id=actor_id)
    reads = mine.filter(action__in=READ_ACTIONS, outcome="success")
    stats = reads.aggregate(patients=Count("patient_id", distinct=True))
    username = mine.values_list("actor_username", flat=True).last() or str(actor_id)
    if stats["patients"] >= rules.patients:
        raise_alert(
            "access.many_patients",
            severity="warning",
            summary=f"{username} opened records of {stats['patients']} patients "
            f"in {rules.window_minutes} minutes",
            details={"actor_id": actor_id, "actor": username, "patients": stats["patients"]},
            dedupe_key=f"many-patients:{actor_id}",
        )
    lately = reads.filter(at__gte=timezone.now() - timedelta(minutes=1))
    # A lab history page reads every report of its patient (one event each, all in one
    # request): a chronic patient's page must not look like a crawler, so it counts once.
    pages = lately.filter(extra__via=tags.VIA_RESULTS_HISTORY)
    last_minute = lately.count() - pages.count() + pages.values("request_id").distinct().count()
    if last_minute >= rules.reads_per_minute:
        raise_alert(
            "access.crawler",
            severity="critical",
            summary=f"{username} made {last_minute} reads in one minute (crawler-like)",
            details={"actor_id": actor_id, "actor": username, "reads_last_minute": last_minute},
            dedupe_key=f"crawler:{actor_id}",
        )
    denied = mine.filter(outcome="denied").count()
    if denied >= rules.denials:
        raise_alert(
            "access.denials",
            severity="warning",
            summary=f"{username} was denied {denied} times in {rules.window_minutes} minutes",
            details={"actor_id": actor_id, "actor": username, "denied": denied},
            dedupe_key=f"denials:actor:{actor_id}",
        )


def _check_address(recent: QuerySet[AuditEvent], address: str, rules: Thresholds) -> None:
    """One source address over the window: repeated denials, signed-in or not."""
    # Anonymous refusals are counted, one event for many (refusals.py): sum their counts.
    denied = sum(
        weight(extra)
        for extra in recent.filter(Q(source_ip=address) & Q(outcome="denied")).values_list(
            "extra", flat=True
        )
    )
    if denied >= rules.denials:
        raise_alert(
            "access.denials",
            severity="warning",
            summary=f"{denied} denied requests from {address} in {rules.window_minutes} minutes",
            details={"source_ip": address, "denied": denied},
            dedupe_key=f"denials:ip:{address}",
        )


def _details(event: AuditEvent) -> dict[str, object]:
    return {
        "seq": event.seq,
        "action": event.action,
        "actor": event.actor_username,
        "patient_ipp": event.patient_ipp,
        "document_id": event.document_id,
        "source_ip": event.source_ip,
        "at": event.at.isoformat(),
    }


def thresholds_from_settings() -> Thresholds:
    return Thresholds(**getattr(settings, "VIGIE_AUDIT_RULES", {}))
