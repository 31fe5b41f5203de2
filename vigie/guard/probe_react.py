"""Acting on a probe round: the exposure's critical alert, audit event and lockdown; the
warnings' alert; the alert that the probe could not run. Each step runs even if another fails.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.alerts.services import raise_alert
from vigie.audit.log import AuditUnavailable, record
from vigie.guard import lockdown
from vigie.guard.models import ProbeResult
from vigie.guard.policy import Policy
from vigie.guard.probe_outcome import ProbeRound, Recheck

logger = logging.getLogger(__name__)


def _listing(results: list[ProbeResult], limit: int = 5) -> str:
    shown = "; ".join(f"{r.url} → {r.detail}" for r in results[:limit])
    more = len(results) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


def _recheck_verdict(checked: Recheck) -> str:
    seen = timezone.localtime(checked.seen_at).strftime("%H:%M:%S")
    seconds = f"{(checked.checked_at - checked.seen_at).total_seconds():.1f}"
    if checked.error:
        return _("Reachable at %(seen)s; nothing could check again from outside (%(error)s).") % {
            "seen": seen,
            "error": checked.error,
        }
    if checked.still_open:
        return _("Reachable at %(seen)s and still %(seconds)s s later (%(targets)s).") % {
            "seen": seen,
            "seconds": seconds,
            "targets": ", ".join(checked.still_open),
        }
    return _(
        "Reachable at %(seen)s, closed from outside %(seconds)s s later (%(targets)s): no lockdown."
    ) % {"seen": seen, "seconds": seconds, "targets": ", ".join(checked.closed)}


def react(policy: Policy, outcome: ProbeRound) -> None:
    """Alerts, audit and lockdown for a round; each step runs even if another fails."""
    if outcome.leaks:
        _react_to_exposure(policy, outcome)
    if outcome.warnings:
        _alert_warnings(outcome)
    if outcome.errors:
        raise_alert(
            "guard.probe.failed",
            severity="warning",
            summary=f"The outside-in probe could not run: {outcome.errors[0].detail}",
            details={"round_id": outcome.round_id, "count": len(outcome.errors)},
            dedupe_key="guard.probe.failed",
        )


def _exposure_report(outcome: ProbeRound) -> tuple[str, dict[str, Any]]:
    """The exposure alert's summary and details, with what the second look saw if any."""
    summary = _("Exposure seen from outside: %(leaks)s") % {"leaks": _listing(outcome.leaks)}
    details: dict[str, Any] = {
        "round_id": outcome.round_id,
        "leaks": [
            {"url": r.url, "category": r.category, "status": r.status, "served": r.detail}
            for r in outcome.leaks[:50]
        ],
        "leak_count": len(outcome.leaks),
    }
    checked = outcome.recheck
    if checked is not None:
        summary = f"{summary}. {_recheck_verdict(checked)}"
        details["recheck"] = {
            "reachable_at": checked.seen_at.isoformat(),
            "checked_at": checked.checked_at.isoformat(),
            "still_open": checked.still_open,
            "closed": checked.closed,
            "error": checked.error,
        }
    return summary, details


def _react_to_exposure(policy: Policy, outcome: ProbeRound) -> None:
    origins = sorted({"{0.scheme}://{0.netloc}".format(urlsplit(r.url)) for r in outcome.leaks})
    summary, details = _exposure_report(outcome)
    # Reachable a moment ago and closed now (the guard repaired its table): recorded,
    # not answered by cutting the doctors off.
    closed_again = outcome.recheck is not None and outcome.recheck.closed_now
    if policy.lockdown_on_exposure and not closed_again:
        try:
            outcome.lockdown_engaged = lockdown.engage(
                f"the outside-in probe saw an exposure ({len(outcome.leaks)} URL(s))",
                {"round_id": outcome.round_id, "urls": [r.url for r in outcome.leaks[:20]]},
            )
        except Exception:  # the alert below must go out whatever happened here
            logger.exception("probe: could not engage the lockdown")
    raise_alert(
        "guard.probe.exposure",
        severity="critical",
        summary=summary,
        details=details,
        dedupe_key=f"guard.probe.exposure:{','.join(origins)}",
    )
    try:
        record(
            "guard.probe.exposure",
            outcome="failure",
            reason=summary[:500],
            extra={
                "round_id": outcome.round_id,
                "urls": [r.url for r in outcome.leaks[:20]],
                "leak_count": len(outcome.leaks),
                "lockdown_engaged": outcome.lockdown_engaged,
                "closed_on_recheck": closed_again,
            },
        )
    except (AuditUnavailable, DatabaseError):
        logger.exception("probe: could not record the exposure in the audit trail")


def _alert_warnings(outcome: ProbeRound) -> None:
    keys = sorted({f"{r.category}:{r.url}" for r in outcome.warnings})
    raise_alert(
        "guard.probe.warning",
        severity="warning",
        summary=f"Outside-in probe warnings: {_listing(outcome.warnings)}",
        details={
            "round_id": outcome.round_id,
            "warnings": [
                {"url": r.url, "category": r.category, "detail": r.detail}
                for r in outcome.warnings[:50]
            ],
        },
        dedupe_key="guard.probe.warning:" + ",".join(keys)[:150],
    )
