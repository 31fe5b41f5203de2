"""Refusals of anonymous callers: counted per source and minute, not chained one by one.

Why: a caller without a credential decides how many requests it sends. When every refusal
appended its own event (hash-chained, fsynced, under the chain's append lock), an
unauthenticated flood grew the audit trail without bound and queued every audited read
behind it. So instead:

* each refusal adds one to a counter keyed by (source, minute, action, reason), atomically
  on SQLite and PostgreSQL and across workers (`RefusalCount`);
* the first refusal of a key in a minute is audited at once, with `count` 1: whoever watches
  the trail, and the anomaly rules, see the source without delay;
* the rest of that minute is audited once the minute is over, as one event per key with its
  `count`: by the source's next refusal (a later minute), or by `vigie audit watch`
  (`flush`). A summary claims its counter with a conditional update in the transaction that
  appends its event, so each refusal reaches the trail exactly once, even with several
  flushers or a crash between the two;
* a source refused `VIGIE_REFUSALS_PER_MINUTE` times in the current minute is throttled until
  the next one: `throttled()` says so before anything else is looked at (no key hashed,
  nothing appended), and counts the request (reason "throttled") for the minute's summary.
  A caller that proves a valid credential is not throttled as anonymous, and so never pays
  for this check (see `intake.apikeys.authenticate`).

The events of a source's minute therefore sum (`extra["count"]`) to the requests refused,
and a flood costs at most two events per source, minute and reason.

Refusals that name a sender (a revoked key, a key used from the wrong network) are audited
one by one (`individually=True`): only a key's holder can cause them, and each says which
key. They still count towards the source's limit, so even a stolen key cannot flood.

IPv6 sources are counted by /64: a host usually holds a whole /64, and counting single
addresses would let it open a new counter, and get a new immediate event, per request.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from vigie.audit.log import AuditUnavailable, record
from vigie.audit.models import RefusalCount

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger(__name__)

THROTTLED = "throttled"
MINUTE = timedelta(minutes=1)
# Counters fully recorded are kept this long (what was throttled lately, for an operator
# looking at the table), then deleted: the audit trail holds their counts.
_KEEP = timedelta(hours=1)
# Summaries written per flush call: a backlog is worked through over several passes
# instead of holding up one request or one watch pass.
_FLUSH_BATCH = 500

# When the counter's row is created, or incremented, is this refusal already in the trail?
# "first": only the first of its minute is (anonymous refusals); "each": every one is
# (individually audited); "none": none is yet (throttled requests).
Audited = Literal["first", "each", "none"]


@dataclass(frozen=True)
class _Key:
    source: str
    minute: datetime
    action: str
    reason: str

    def fields(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "minute": self.minute,
            "action": self.action,
            "reason": self.reason,
        }


def source_of(request: HttpRequest) -> str:
    """The address refusals are counted under: IPv4 as is, IPv6 by its /64."""
    address = str(request.META.get("REMOTE_ADDR") or "")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:45]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def throttled(request: HttpRequest, action: str) -> int | None:
    """Seconds this request's source must wait (Retry-After), or None if it may be heard.

    A throttled request is counted under `action`, reason "throttled", and nothing else is
    done: no audit append now (its count is in the minute's summary), no credential check.
    """
    moment = timezone.now()
    key = _Key(source_of(request), minute_of(moment), action, THROTTLED)
    refused_so_far = RefusalCount.objects.filter(source=key.source, minute=key.minute).aggregate(
        total=Sum("count")
    )["total"]
    if (refused_so_far or 0) < settings.VIGIE_REFUSALS_PER_MINUTE:
        return None
    _count(key, audited="none")
    return max(1, math.ceil((key.minute + MINUTE - moment).total_seconds()))


def refused(
    request: HttpRequest,
    action: str,
    reason: str,
    *,
    extra: dict[str, Any] | None = None,
    individually: bool = False,
) -> None:
    """Count one refusal; audit it now if it is its key's first this minute (or
    `individually`), else leave it to the minute's summary. Raises `AuditUnavailable` like
    `record()`: then nothing was counted either, and the caller fails closed."""
    moment = timezone.now()
    key = _Key(source_of(request), minute_of(moment), action, reason)
    details = {
        **(extra or {}),
        "count": 1,
        "source": key.source,
        "minute": key.minute.isoformat(),
    }
    with transaction.atomic():
        first = _count(key, audited="each" if individually else "first")
        if first or individually:
            record(action, request=request, outcome="denied", reason=reason, extra=details)
    if first:
        # A new minute for this source: the counts of its earlier minutes can be written now,
        # without waiting for the watcher. Best effort: the watcher retries what fails here.
        try:
            flush(source=key.source)
        except AuditUnavailable:
            logger.exception("could not write the refusal counts of %s", key.source)


def _count(key: _Key, *, audited: Audited) -> bool:
    """Add one refusal to `key`'s counter; True if this created it (first of its minute)."""
    increments: dict[str, Any] = {"count": F("count") + 1}
    if audited == "each":
        increments["recorded"] = F("recorded") + 1
    rows = RefusalCount.objects.filter(**key.fields())
    if rows.update(**increments):
        return False
    try:
        # A savepoint: losing the race to create the row must not spoil the caller's
        # transaction; the winner's row is then incremented like any other.
        with transaction.atomic():
            RefusalCount.objects.create(
                **key.fields(), count=1, recorded=0 if audited == "none" else 1
            )
    except IntegrityError:
        rows.update(**increments)
        return False
    return True


def flush(*, source: str | None = None) -> int:
    """Audit the counts not yet in the trail, of minutes that are over; events written.

    `vigie audit watch` calls it every pass (all sources); a source's refusal in a new
    minute calls it for that source.
    """
    current = minute_of(timezone.now())
    pending = RefusalCount.objects.filter(minute__lt=current, count__gt=F("recorded"))
    if source is not None:
        pending = pending.filter(source=source)
    written = 0
    for row in pending.order_by("minute", "pk")[:_FLUSH_BATCH]:
        with transaction.atomic():
            # Claimed only if nobody else wrote it (another worker, the watcher) and no late
            # refusal moved the count since we read it; otherwise a later pass takes it.
            claimed = RefusalCount.objects.filter(
                pk=row.pk, count=row.count, recorded=row.recorded
            ).update(recorded=row.count)
            if not claimed:
                continue
            record(
                row.action,
                outcome="denied",
                reason=row.reason,
                source_ip=row.source,
                extra={
                    "count": row.count - row.recorded,
                    "source": row.source,
                    "minute": row.minute.isoformat(),
                    "summary": True,
                },
            )
        written += 1
    if source is None:
        RefusalCount.objects.filter(minute__lt=current - _KEEP, count=F("recorded")).delete()
    return written


def weight(extra: Any) -> int:
    """How many refusals an event stands for: its `count` if it has one, else 1."""
    count = extra.get("count") if isinstance(extra, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
