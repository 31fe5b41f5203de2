"""Maintenance windows: open, close, extend, and the guard's reconciliation of DB and kernel.

A window is two things that must agree: an element `source . port` with a kernel timeout in
Vigie's nftables set (what actually lets traffic in, and what closes itself even if Vigie is
dead) and a `MaintenanceWindow` row with its audit events (the record of who, why, until
when). Every change takes the same lock (the GuardState row, inside a transaction) so that
the guard's `sweep()` never sees a kernel element whose row is still being committed, or a
row whose element is being removed by `close_window()`, and mistakes one for tampering.

The CLI (`vigie maintenance`) and the guard daemon call these functions; nothing else
touches the window sets.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.alerts.services import raise_alert
from vigie.audit.log import record
from vigie.guard import nft
from vigie.guard.models import CloseReason, GuardState, MaintenanceWindow

if TYPE_CHECKING:
    from vigie.accounts.models import User
    from vigie.guard.policy import Policy

logger = logging.getLogger(__name__)

# The kernel's timeout starts when the element is added, a few milliseconds after the row's
# `ends_at` was computed, and is kept in jiffies: an element may disappear a hair before
# `ends_at`. Within this margin that is an expiry, not somebody deleting the window.
VANISH_GRACE = timedelta(seconds=1)
# Windows closed by hand are verified from outside by the next sweeps, if this recent.
VERIFY_WITHIN = timedelta(minutes=10)
# A port seen open after a window ended is asked about again this much later, as the probe
# does (probe_recheck.RECHECK_SECONDS): the check may have run during the ~0.3 s the guard
# takes to reinstall a flushed table. Closed by then → recorded (the alert says it was reachable),
# and the window counts as verified closed.
RECHECK_SECONDS = 1.5

Verifier = Callable[[MaintenanceWindow], bool | None]


class WindowError(ValueError):
    """A window request that cannot be honoured; the message says why, in one line."""


# --- helpers ---


def format_duration(seconds: float) -> str:
    """14400 → '4h', 5400 → '1h30m', 90 → '1m30s', 1.5 → '1.5s' (the policy's own units)."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:g}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


def _address(source: str) -> str:
    """The one address a window may open for; networks and wildcards are refused."""
    text = (source or "").strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if "/" in text:
            raise WindowError(
                _("source %(source)s is a network: a window opens for one address only")
                % {"source": text}
            ) from None
        raise WindowError(_("source %(source)r is not an IP address") % {"source": text}) from None
    if address.is_unspecified or address.is_multicast:
        # 0.0.0.0 or :: would read as "everyone" to a human, whatever nft makes of it.
        raise WindowError(
            _("source %(source)s is not a single host address") % {"source": str(address)}
        )
    return str(address)


def _key(source: str, port: int) -> tuple[str, int]:
    # One spelling per address, so "2001:db8::1" from nft matches the row's text.
    return (str(ipaddress.ip_address(source)), int(port))


def check_ttl(policy: Policy, ttl: float) -> float:
    """`ttl` in seconds if the policy allows it; WindowError (naming the cap) otherwise."""
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not math.isfinite(ttl):
        raise WindowError(_("ttl must be a duration like 30m or 4h"))
    if ttl <= 0:
        raise WindowError(_("ttl must be more than zero"))
    if ttl > policy.max_ttl:
        raise WindowError(
            _("ttl %(ttl)s is longer than the policy allows: maintenance.max_ttl is %(cap)s")
            % {"ttl": format_duration(ttl), "cap": format_duration(policy.max_ttl)}
        )
    return float(ttl)


def _serialise() -> None:
    """Take the windows lock for the current transaction (see the module docstring)."""
    GuardState.get()
    GuardState.objects.select_for_update().filter(pk=GuardState.SINGLETON).exists()


def _flush(source: str, port: int) -> tuple[int | None, str]:
    """Cut established sessions; a failure is reported, not fatal: the element is gone
    already and the chain resets the next packet of any session that survived."""
    try:
        return nft.flush_conntrack(source, port), ""
    except (nft.NftError, nft.NftUnavailable) as exc:
        logger.warning("conntrack flush for %s:%s failed: %s", source, port, exc)
        return None, str(exc)


def _stamp(moment: Any) -> str:
    return str(timezone.localtime(moment).isoformat(timespec="seconds"))


# --- actions ---


def open_window(
    policy: Policy,
    *,
    who: str,
    reason: str,
    source: str,
    ttl: float,
    port: int | None = None,
) -> MaintenanceWindow:
    """Let `source` reach `port` for `ttl` seconds: kernel element, row and audit event."""
    who, reason = _who_and_why(who, reason)
    address = _address(source)
    port = _maintenance_port(policy, port)
    ttl = check_ttl(policy, ttl)

    # Refuse loudly where nftables cannot be used: a window that exists only in the
    # database would tell the technician the port is open (or closed) when it is not.
    nft.check_available()
    if not nft.table_exists():
        nft.install(policy)

    added = False
    try:
        with transaction.atomic():
            _serialise()
            _refuse_a_second(address, port)
            now = timezone.now()
            window = MaintenanceWindow.objects.create(
                who=who,
                reason=reason,
                source=address,
                port=port,
                opened_at=now,
                ends_at=now + timedelta(seconds=ttl),
            )
            record(
                "maintenance.window.opened",
                reason=reason,
                extra={
                    "window": window.pk,
                    "who": who,
                    "reason": reason,
                    "source": address,
                    "port": port,
                    "ttl": format_duration(ttl),
                    "ends_at": _stamp(window.ends_at),
                },
            )
            # Last: if nft refuses, the row and its event roll back with the exception.
            nft.add_window(address, port, ttl)
            added = True
    except BaseException:
        if added:
            # The commit failed after the kernel took the element: take it back, so the
            # firewall never holds a window nobody has a record of.
            try:
                nft.remove_window(address, port)
            except (nft.NftError, nft.NftUnavailable):
                logger.exception(
                    "window %s:%s opened but not recorded; sweep removes it", address, port
                )
        raise
    return window


def _who_and_why(who: str, reason: str) -> tuple[str, str]:
    """Who the window is for and why, stripped: both required, both bounded."""
    who = (who or "").strip()
    reason = (reason or "").strip()
    if not who:
        raise WindowError(_("say who the window is for (--who)"))
    if len(who) > 150:
        raise WindowError(_("--who is longer than 150 characters"))
    if not reason:
        raise WindowError(_("give the reason for the window (--reason)"))
    if len(reason) > 500:
        raise WindowError(_("--reason is longer than 500 characters"))
    return who, reason


def _maintenance_port(policy: Policy, port: int | None) -> int:
    """`port`, or the policy's first maintenance port; one the policy allows in any case."""
    if not policy.maintenance_ports:
        raise WindowError(_("the policy allows no maintenance ports (maintenance.ports)"))
    if port is None:
        port = policy.maintenance_ports[0]
    if port not in policy.maintenance_ports:
        raise WindowError(
            _("port %(port)s is not a maintenance port of the policy (allowed: %(ports)s)")
            % {"port": port, "ports": ", ".join(str(p) for p in policy.maintenance_ports)}
        )
    return port


def _refuse_a_second(address: str, port: int) -> None:
    """One window per source and port, whether Vigie's row or a kernel element says so."""
    current = MaintenanceWindow.objects.open().filter(source=address, port=port).first()
    if current is not None:
        raise WindowError(
            _("window %(id)s for %(source)s:%(port)s is already open; extend it instead")
            % {"id": current.pk, "source": address, "port": port}
        )
    if _key(address, port) in {_key(e.source, e.port) for e in nft.list_windows()}:
        raise WindowError(
            _(
                "the firewall already holds a window for %(source)s:%(port)s that "
                "Vigie did not open; the guard removes it"
            )
            % {"source": address, "port": port}
        )


def close_window(window: MaintenanceWindow, *, by: str) -> MaintenanceWindow:
    """End `window` now: element removed, its sessions cut, row closed, audit event."""
    with transaction.atomic():
        _serialise()
        row = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if row.closed_at is not None:
            raise WindowError(_("window %(id)s is already closed") % {"id": row.pk})
        if row.ends_at <= timezone.now():
            # The kernel closed it already; record it truthfully as expired.
            expired = _expire_locked(row)
            return expired
        removed = nft.remove_window(row.source, row.port)
        flushed, flush_error = _flush(row.source, row.port)
        row.closed_at = timezone.now()
        row.close_reason = CloseReason.CLOSED
        row.save(update_fields=["closed_at", "close_reason"])
        record(
            "maintenance.window.closed",
            extra={
                "window": row.pk,
                "by": by,
                "source": row.source,
                "port": row.port,
                "element_present": removed,
                "conntrack_flushed": flushed,
                "conntrack_error": flush_error,
            },
        )
    return row


def extend_window(
    policy: Policy,
    window: MaintenanceWindow,
    *,
    by: str,
    ttl: float,
    actor: User | None = None,
) -> MaintenanceWindow:
    """Give an open window a new end, `ttl` from now (each extension capped by the policy)."""
    ttl = check_ttl(policy, ttl)
    with transaction.atomic():
        _serialise()
        row = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if not row.is_open:
            raise WindowError(_("window %(id)s is not open") % {"id": row.pk})
        previous = row.ends_at
        row.ends_at = timezone.now() + timedelta(seconds=ttl)
        row.extensions += 1
        row.extended_by = by[:150]
        row.save(update_fields=["ends_at", "extensions", "extended_by"])
        record(
            "maintenance.window.extended",
            actor=actor,
            extra={
                "window": row.pk,
                "by": by,
                "source": row.source,
                "port": row.port,
                "ttl": format_duration(ttl),
                "previous_ends_at": _stamp(previous),
                "ends_at": _stamp(row.ends_at),
                "extensions": row.extensions,
            },
        )
        # Last, as in open_window: an nft refusal (the element is gone) rolls the row back.
        nft.replace_window(row.source, row.port, ttl)
    return row


def list_windows(*, include_closed: bool = False) -> list[MaintenanceWindow]:
    """Windows not yet closed (open, or ended and awaiting the guard), newest first."""
    windows = MaintenanceWindow.objects.all()
    if not include_closed:
        windows = windows.filter(closed_at__isnull=True)
    return list(windows.order_by("-opened_at", "-pk"))


# --- the guard's reconciliation ---


def _expire_locked(row: MaintenanceWindow) -> MaintenanceWindow:
    """Record the kernel's expiry of `row` (caller holds the lock, row is past its end)."""
    shared = (
        MaintenanceWindow.objects.open().filter(source=row.source, port=row.port).exclude(pk=row.pk)
    ).exists()
    if shared:
        # A newer window for the same source and port is open: its element and its
        # sessions are not this window's to remove.
        still_there, flushed, flush_error = False, None, "newer window open"
    else:
        still_there = nft.remove_window(row.source, row.port)
        flushed, flush_error = _flush(row.source, row.port)
    row.closed_at = row.ends_at
    row.close_reason = CloseReason.EXPIRED
    row.save(update_fields=["closed_at", "close_reason"])
    record(
        "maintenance.window.expired",
        extra={
            "window": row.pk,
            "who": row.who,
            "source": row.source,
            "port": row.port,
            "ends_at": _stamp(row.ends_at),
            "element_present": still_there,
            "conntrack_flushed": flushed,
            "conntrack_error": flush_error,
        },
    )
    return row


def _expire_due() -> list[MaintenanceWindow]:
    closed: list[MaintenanceWindow] = []
    for pk in list(MaintenanceWindow.objects.unreconciled().values_list("pk", flat=True)):
        try:
            with transaction.atomic():
                _serialise()
                row = (
                    MaintenanceWindow.objects.unreconciled()
                    .select_for_update()
                    .filter(pk=pk)
                    .first()
                )
                if row is not None:  # else another process reconciled it meanwhile
                    closed.append(_expire_locked(row))
        except Exception:
            # The daemon must keep running: the row stays unreconciled, retried next sweep.
            logger.exception("could not record the expiry of window %s", pk)
    return closed


def _reconcile_kernel() -> list[MaintenanceWindow]:
    closed: list[MaintenanceWindow] = []
    alerts: list[dict[str, Any]] = []
    with transaction.atomic():
        _serialise()
        elements = nft.list_windows()
        now = timezone.now()
        present = {_key(e.source, e.port) for e in elements}
        rows = list(MaintenanceWindow.objects.select_for_update().filter(closed_at__isnull=True))
        known = {_key(r.source, r.port) for r in rows}

        for row in rows:
            if _key(row.source, row.port) in present or row.ends_at <= now + VANISH_GRACE:
                continue
            alerts.append(_close_vanished(row, now))
            closed.append(row)

        for element in elements:
            if _key(element.source, element.port) in known:
                continue
            alerts.append(_remove_unknown(element))
    # After the commit: an alert about a change that rolled back would be a false alarm.
    for alert in alerts:
        raise_alert(**alert)
    return closed


def _close_vanished(row: MaintenanceWindow, now: datetime) -> dict[str, Any]:
    """Close the row of a window whose element left the kernel early; the alert to raise."""
    flushed, flush_error = _flush(row.source, row.port)
    row.closed_at = now
    row.close_reason = CloseReason.VANISHED
    row.save(update_fields=["closed_at", "close_reason"])
    details = {
        "window": row.pk,
        "who": row.who,
        "source": row.source,
        "port": row.port,
        "ends_at": _stamp(row.ends_at),
        "conntrack_flushed": flushed,
        "conntrack_error": flush_error,
    }
    record("maintenance.window.vanished", outcome="failure", extra=details)
    return {
        "kind": "guard.window.vanished",
        "severity": "warning",
        "summary": _(
            "Maintenance window %(id)s (%(source)s:%(port)s) was removed from the "
            "firewall outside Vigie before its end"
        )
        % {"id": row.pk, "source": row.source, "port": row.port},
        "details": details,
        "dedupe_key": f"guard.window.vanished:{row.pk}",
    }


def _remove_unknown(element: nft.WindowElement) -> dict[str, Any]:
    """Somebody opened the firewall by hand: the incident's mistake. Close it; the alert."""
    removed = nft.remove_window(element.source, element.port)
    flushed, flush_error = _flush(element.source, element.port)
    details = {
        "source": element.source,
        "port": element.port,
        # Audit events take no floats: the remaining time as the policy writes durations.
        "expires_in": (
            format_duration(element.expires_in) if element.expires_in is not None else None
        ),
        "removed": removed,
        "conntrack_flushed": flushed,
        "conntrack_error": flush_error,
    }
    record(
        "maintenance.window.unknown_removed",
        outcome="denied",
        reason="window element added outside vigie",
        extra=details,
    )
    return {
        "kind": "guard.window.unknown",
        "severity": "critical",
        "summary": _(
            "A maintenance window for %(source)s to port %(port)s was opened outside "
            "Vigie; the guard closed it"
        )
        % {"source": element.source, "port": element.port},
        "details": details,
        "dedupe_key": f"guard.window.unknown:{element.source}:{element.port}",
    }


def _awaiting_verification(closed: list[MaintenanceWindow]) -> list[MaintenanceWindow]:
    pending = {w.pk: w for w in closed}
    recent = MaintenanceWindow.objects.filter(
        close_reason=CloseReason.CLOSED,
        verified_at__isnull=True,
        closed_at__gte=timezone.now() - VERIFY_WITHIN,
    )
    for window in recent:
        pending.setdefault(window.pk, window)
    return list(pending.values())


def _ask(window: MaintenanceWindow, verify: Verifier) -> bool | None:
    try:
        return verify(window)
    except Exception:
        logger.exception("outside check of window %s failed", window.pk)
        return None


def _verify(window: MaintenanceWindow, verify: Verifier) -> None:
    result = _ask(window, verify)
    reachable_at = None
    if result is False:
        reachable_at = timezone.now()
        time.sleep(RECHECK_SECONDS)
        # Nothing could tell the second time: what was seen stands (still open).
        result = _ask(window, verify) or False
    now = timezone.now()
    details: dict[str, Any] = {
        "window": window.pk,
        "source": window.source,
        "port": window.port,
        "closed_from_outside": result,
    }
    if reachable_at is not None:
        details["reachable_at"] = _stamp(reachable_at)
        details["rechecked_at"] = _stamp(now)
    with transaction.atomic():
        MaintenanceWindow.objects.filter(pk=window.pk).update(
            verified_closed=result, verified_at=now
        )
        record(
            "maintenance.window.verified",
            outcome="success" if result else "failure",
            reason="" if result is not None else "could not check from outside",
            extra=details,
        )
    window.verified_closed, window.verified_at = result, now
    if reachable_at is not None and result:
        raise_alert(
            "guard.window.still_open",
            severity="critical",
            summary=_(
                "Port %(port)s was still reachable from outside after maintenance window "
                "%(id)s ended (%(seen)s); closed from outside %(seconds)s s later"
            )
            % {
                "port": window.port,
                "id": window.pk,
                "seen": timezone.localtime(reachable_at).strftime("%H:%M:%S"),
                "seconds": f"{(now - reachable_at).total_seconds():.1f}",
            },
            details=details,
            dedupe_key=f"guard.window.still_open:{window.pk}",
        )
    if result is False:
        raise_alert(
            "guard.window.still_open",
            severity="critical",
            summary=_(
                "Port %(port)s is still reachable from outside after maintenance window "
                "%(id)s ended"
            )
            % {"port": window.port, "id": window.pk},
            details=details,
            dedupe_key=f"guard.window.still_open:{window.pk}",
        )


def sweep(*, verify: Verifier | None = None) -> list[MaintenanceWindow]:
    """Reconcile rows and kernel once; the windows this sweep closed.

    Called by the guard every second or so. Idempotent, and never raises: whatever fails
    (nft, conntrack, the database) is logged and retried by the next sweep.
    """
    closed = _expire_due()
    try:
        closed.extend(_reconcile_kernel())
    except Exception:
        logger.exception("could not reconcile the window sets with the database")
    if verify is not None:
        try:
            pending = _awaiting_verification(closed)
        except Exception:
            logger.exception("could not list windows awaiting verification")
            pending = closed
        for window in pending:
            try:
                _verify(window, verify)
            except Exception:
                logger.exception("could not record the outside check of window %s", window.pk)
    return closed
