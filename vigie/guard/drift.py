"""Drift alarms: the firewall and the listening sockets, compared with what they should be.

Two sources, because each misses what the other sees:

- `nft monitor ruleset` prints a line for every change as it is committed; a thread reads it
  and sets `DriftWatcher.changed`, so the guard checks at once instead of at its next tick;
- a full snapshot (the whole ruleset as nft JSON, every listening socket via psutil) taken
  at least every `snapshot_interval` is the backstop: the monitor can die, lag or start after
  a change, the snapshot cannot miss a difference that is still there.

What "should be" comes from two places. Vigie's own table is checked against the policy where
the policy says it exactly (guarded ports, allowed sources) and against the state taken when
the watcher started (chains, rules, set definitions). Everything else in the ruleset (other
tables: the host's firewall, Docker, fail2ban…) is compared with that starting state only:
Vigie does not own it, it only notices when it moves. The elements of the window sets are
not compared at all: they come and go with maintenance windows, and the windows module
reconciles them with their rows.

A difference is a `Finding` with a stable key, so a difference that lasts is one alert, not a
new one every ten seconds. A finding that appears while a maintenance window is open is
recorded, not alarmed (the window is why it happened); if it is still there once no window is
open any more, that is the incident this project exists for (a firewall opened for
maintenance and never closed), and it is alarmed as such.

This module is the watcher (alarms, repair, lockdown); what a snapshot holds and how the
ruleset is normalised are in `snapshot.py`, the comparison that yields findings in
`findings.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from django.db import DatabaseError, transaction
from django.utils.translation import gettext as _

from vigie.alerts.models import Alert
from vigie.alerts.services import raise_alert
from vigie.audit.log import AuditUnavailable, record
from vigie.guard import lockdown, nft, probe_recheck
from vigie.guard.findings import CRITICAL, WARNING, Finding, compare
from vigie.guard.models import DriftEvent, MaintenanceWindow
from vigie.guard.policy import Policy
from vigie.guard.snapshot import MAX_LISTED, Baseline, Snapshot, canonical, digest, take_snapshot

logger = logging.getLogger(__name__)

ALERT_KIND = "guard.drift"


# --- the repair ---------------------------------------------------------------------------

# Is this guarded port closed when tried from outside? True, False, or None: cannot tell.
PortCheck = Callable[[int], "bool | None"]


@dataclass
class Repair:
    """One reinstallation of Vigie's table, because of `findings` in it."""

    findings: list[Finding]
    seconds: float = 0.0  # the `nft -f` transaction, from the decision to reinstall
    error: str = ""
    after: Snapshot | None = None  # the ruleset read back once reinstalled


def repair_table(policy: Policy, findings: list[Finding]) -> Repair:
    """Reinstall Vigie's table from the policy in one transaction and read the result back."""
    started = time.monotonic()
    try:
        nft.install(policy)
        seconds = time.monotonic() - started
        after = take_snapshot()
    except (nft.NftUnavailable, nft.NftError, psutil.Error, OSError, ValueError) as exc:
        logger.error("drift: could not repair %s: %s", nft.TABLE, exc)
        return Repair(findings, seconds=time.monotonic() - started, error=str(exc))
    return Repair(findings, seconds=seconds, after=after)


# --- the watcher --------------------------------------------------------------------------


class DriftWatcher:
    """Checks for drift on demand (`check`), woken at once by `nft monitor` (`changed`).

    `check` is meant to run in one thread (the guard's drift loop); the monitor thread only
    sets the event. Keys seen so far live in memory: a restarted guard takes a new baseline
    after reinstalling its table, and findings still present are reported afresh.

    A difference in Vigie's own table is repaired at once (the table reinstalled whole, see
    `repair_table`); whether the portal is then locked down depends on what `port_closed`
    (by default the outside probe) sees after the repair.
    """

    def __init__(self, policy: Policy, *, port_closed: PortCheck | None = None) -> None:
        self.policy = policy
        self.port_closed: PortCheck = port_closed or (
            lambda port: probe_recheck.port_closed_from_outside(policy, port)
        )
        self.changed = threading.Event()
        self.baseline: Baseline | None = None
        self._active: dict[str, Finding] = {}
        # Keys first seen while a window was open and not yet alarmed as persisted.
        self._from_window: dict[str, Finding] = {}
        # Findings already present when the baseline was taken.
        self._preexisting: frozenset[str] = frozenset()
        # Findings in Vigie's table that survived a reinstall: not reinstalled again.
        self._futile: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._proc_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- life cycle ---

    def start(self) -> None:
        """Take the baseline and start listening to `nft monitor`."""
        with self._lock:
            try:
                snapshot = take_snapshot()
            except (nft.NftUnavailable, nft.NftError, psutil.Error, OSError, ValueError) as exc:
                # check() takes it as soon as nft answers again.
                self._unavailable(exc)
            else:
                self._set_baseline(snapshot)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="guard-nft-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._proc_lock:
            proc = self._proc
        if proc is not None:
            _terminate(proc, timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def rebaseline(self) -> None:
        """Accept the ruleset as it is now (after an admin reviewed the drift)."""
        with self._lock:
            baseline = self._set_baseline(take_snapshot())
            self._from_window.clear()
            record(
                "guard.drift.rebaselined",
                extra={"tables": [t.label for t in baseline.ruleset.tables.values()]},
            )

    def _set_baseline(self, snapshot: Snapshot) -> Baseline:
        self.baseline = Baseline.of(snapshot)
        self._futile = frozenset()
        self._preexisting = frozenset(f.key for f in compare(self.policy, snapshot, self.baseline))
        return self.baseline

    @property
    def findings(self) -> list[Finding]:
        """The differences present at the last check."""
        with self._lock:
            return list(self._active.values())

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                proc = nft.monitor()
            except (nft.NftUnavailable, OSError):
                logger.warning("drift: cannot start `nft monitor`; snapshots only", exc_info=True)
                self._stopping.wait(self.policy.snapshot_interval)
                continue
            with self._proc_lock:
                self._proc = proc
            if self._stopping.is_set():  # stop() ran before the process was visible to it
                _terminate(proc, 5.0)
                break
            for line in proc.stdout or ():
                if line.strip():
                    self.changed.set()
            proc.wait()
            if not self._stopping.is_set():
                # The monitor died (nft killed, namespace gone): check now, restart it soon.
                logger.warning("drift: `nft monitor` exited (%s); restarting", proc.returncode)
                self.changed.set()
                self._stopping.wait(1.0)

    # --- checking ---

    def check(self) -> list[DriftEvent]:
        """Snapshot, compare, and act on what changed; the DriftEvent rows written."""
        with self._lock:
            try:
                snapshot = take_snapshot()
            except (nft.NftUnavailable, nft.NftError, psutil.Error, OSError, ValueError) as exc:
                self._unavailable(exc)
                return []
            baseline = self.baseline or self._set_baseline(snapshot)
            found = compare(self.policy, snapshot, baseline)
            repair: Repair | None = None
            owned = [f for f in found if f.repairable]
            if owned and not {f.key for f in owned} <= self._futile:
                # Vigie's table is never changed by hand legitimately (windows go through
                # `vigie maintenance`, the policy through a restart): put it back first, then
                # tell. A window open or not makes no difference to that.
                repair = repair_table(self.policy, owned)
                if repair.after is not None:
                    found = compare(self.policy, repair.after, baseline)
                    # What a reinstall did not fix, another will not either (a starting state
                    # taken from a tampered table): alarmed below, not reinstalled in a loop
                    # that each reinstall's own `nft monitor` events would keep spinning.
                    self._futile = frozenset(f.key for f in found if f.repairable)
            current = {f.key: f for f in found}
            in_window = MaintenanceWindow.objects.open().exists()
            events: list[DriftEvent] = []
            if repair is not None:
                if repair.error:
                    self._repair_failed(repair)
                fixed = [f for f in repair.findings if f.key not in current]
                if fixed:
                    events += self._repaired(fixed, repair, in_window=in_window)
            for key, finding in current.items():
                if key not in self._active:
                    # What was there when the watcher started predates it: no window can be
                    # said to explain it (a guard restarted mid-window must not excuse a
                    # listener started days ago), so it is alarmed as it stands.
                    event = self._detected(
                        finding, in_window=in_window and key not in self._preexisting
                    )
                    if event is not None:
                        events.append(event)
            for key in [k for k in self._active if k not in current]:
                self._resolved(self._active.pop(key))
                self._from_window.pop(key, None)
                # If it comes back, it is a new change, not the state found at start.
                self._preexisting -= {key}
            if not in_window:
                for key in [k for k in self._from_window if k in current]:
                    event = self._persisted(current[key])
                    if event is not None:
                        events.append(event)
            return events

    def _open_windows(self) -> list[str]:
        return [str(w) for w in MaintenanceWindow.objects.open()]

    def _store(
        self, finding: Finding, kind: str, summary: str, details: dict[str, Any], *, in_window: bool
    ) -> DriftEvent | None:
        action = (
            "guard.drift.persisted" if kind == DriftEvent.Kind.PERSISTED else "guard.drift.detected"
        )
        try:
            with transaction.atomic():
                event = DriftEvent.objects.create(
                    kind=kind,
                    summary=summary[:500],
                    details=json.loads(canonical(details)),
                    during_window=in_window,
                    alerted=not in_window,
                )
                record(
                    action,
                    reason=summary,
                    extra={
                        "drift_event": event.pk,
                        "key": finding.key,
                        "kind": kind,
                        "severity": finding.severity,
                        "exposing": finding.exposing,
                        "during_window": in_window,
                    },
                )
        except (DatabaseError, AuditUnavailable):
            # Not marked as seen: the next check tries again (the alert below still goes).
            logger.exception("drift: could not record %s", finding.key)
            return None
        return event

    def _lock_down(self, summary: str, details: dict[str, Any]) -> None:
        if not (self.policy.lockdown_on_exposure):
            return
        try:
            lockdown.engage(summary, details)
        except (DatabaseError, AuditUnavailable):
            logger.exception("drift: could not engage the lockdown (%s)", summary)

    def _detected(self, finding: Finding, *, in_window: bool) -> DriftEvent | None:
        details = {
            **finding.details,
            "key": finding.key,
            "severity": finding.severity,
            "exposing": finding.exposing,
        }
        if in_window:
            details["windows"] = self._open_windows()
        event = self._store(finding, finding.kind, finding.summary, details, in_window=in_window)
        if in_window:
            # Recorded, not alarmed: the window is why it changed. Unless it outlives it.
            self._from_window[finding.key] = finding
        else:
            raise_alert(
                ALERT_KIND,
                severity=finding.severity,
                summary=finding.summary,
                details=details,
                dedupe_key=f"{ALERT_KIND}:{finding.key}",
            )
            if finding.exposing:
                self._lock_down(finding.summary, details)
        if event is not None:
            self._active[finding.key] = finding
        return event

    def _outside_verdict(self) -> tuple[bool, str, dict[int, bool | None]]:
        """After a repair: lock down or not, why, and what the outside check saw per port."""
        seen = {port: self.port_closed(port) for port in self.policy.public_ports}
        still_open = [str(p) for p, closed in seen.items() if closed is False]
        unknown = [str(p) for p, closed in seen.items() if closed is None]
        if still_open:
            return (
                True,
                _("Seen from outside, port %(ports)s still answers: the portal is locked down.")
                % {"ports": ", ".join(still_open)},
                seen,
            )
        if unknown:
            # Without a probe nothing outside confirms the repair took effect where it
            # matters (a perimeter may forward the port elsewhere): fail closed.
            return (
                True,
                _(
                    "Nothing could confirm from outside that port %(ports)s is closed again: "
                    "the portal is locked down."
                )
                % {"ports": ", ".join(unknown)},
                seen,
            )
        return (
            False,
            _("Seen from outside, port %(ports)s is closed again: no lockdown.")
            % {"ports": ", ".join(str(p) for p in seen)},
            seen,
        )

    def _repaired(
        self, fixed: list[Finding], repair: Repair, *, in_window: bool
    ) -> list[DriftEvent]:
        exposing = any(f.exposing for f in fixed)
        milliseconds = round(repair.seconds * 1000)
        changes = "; ".join(f.summary for f in fixed[:3])
        if len(fixed) > 3:
            changes += " " + _("(and %(count)s more)") % {"count": len(fixed) - 3}
        summary = _(
            "Repaired: Vigie's firewall table was changed by hand and has been reinstalled "
            "(%(ms)s ms). %(changes)s."
        ) % {"ms": milliseconds, "changes": changes}
        details: dict[str, Any] = {
            "repaired": True,
            "repair_ms": milliseconds,
            "keys": [f.key for f in fixed],
            "changes": [f.summary for f in fixed[:MAX_LISTED]],
            "exposing": exposing,
            "during_window": in_window,
        }
        # Told at once: the outside check below can take seconds (an ssh round trip).
        alert = raise_alert(
            ALERT_KIND,
            severity=CRITICAL if any(f.severity == CRITICAL for f in fixed) else WARNING,
            summary=summary,
            details=details,
            dedupe_key=f"{ALERT_KIND}.repaired:{digest(canonical(sorted(details['keys'])))}",
        )
        events: list[DriftEvent] = []
        for finding in fixed:
            event = self._store(
                finding,
                finding.kind,
                finding.summary,
                {
                    **finding.details,
                    "key": finding.key,
                    "severity": finding.severity,
                    "exposing": finding.exposing,
                    "repaired": True,
                    "repair_ms": milliseconds,
                },
                in_window=False,
            )
            if event is not None:
                events.append(event)
        lock = False
        if exposing:
            lock, verdict, seen = self._outside_verdict()
            summary = f"{summary} {verdict}"
            details["closed_from_outside"] = {str(p): closed for p, closed in seen.items()}
            details["lockdown"] = lock and self.policy.lockdown_on_exposure
            # The alert row shows the verdict too (what was delivered said "repaired").
            with contextlib.suppress(DatabaseError):
                Alert.objects.filter(pk=alert.pk).update(
                    summary=summary[:500], details=json.loads(canonical(details))
                )
            if lock:
                self._lock_down(summary, details)
        try:
            record(
                "guard.table.repaired",
                reason=summary,
                extra={
                    "keys": details["keys"][:MAX_LISTED],
                    "repair_ms": milliseconds,
                    "exposing": exposing,
                    "closed_from_outside": details.get("closed_from_outside", {}),
                    "lockdown": lock and self.policy.lockdown_on_exposure,
                },
            )
        except AuditUnavailable:
            logger.exception("drift: could not audit the repair of %s", nft.TABLE)
        return events

    def _repair_failed(self, repair: Repair) -> None:
        raise_alert(
            "guard.drift.repair_failed",
            severity=CRITICAL,
            summary=_("Vigie's firewall table could not be repaired: %(error)s")
            % {"error": repair.error},
            details={"error": repair.error, "keys": [f.key for f in repair.findings]},
            dedupe_key="guard.drift.repair_failed",
        )

    def _persisted(self, finding: Finding) -> DriftEvent | None:
        summary = _(
            "Change made during a maintenance window, still there after it closed: %(change)s"
        ) % {"change": finding.summary}
        details = {
            **finding.details,
            "key": finding.key,
            "original_kind": finding.kind,
            "exposing": finding.exposing,
        }
        event = self._store(finding, DriftEvent.Kind.PERSISTED, summary, details, in_window=False)
        raise_alert(
            ALERT_KIND,
            # The finding's own weight: a change elsewhere that cannot expose the portal's
            # ports stays a warning, even when it outlived its window.
            severity=finding.severity,
            summary=summary,
            details=details,
            dedupe_key=f"{ALERT_KIND}.persisted:{finding.key}",
        )
        if finding.exposing:
            self._lock_down(summary, details)
        if event is not None:
            self._from_window.pop(finding.key, None)
        return event

    def _resolved(self, finding: Finding) -> None:
        try:
            record(
                "guard.drift.resolved",
                reason=finding.summary,
                extra={"key": finding.key, "kind": finding.kind},
            )
        except AuditUnavailable:
            logger.exception("drift: could not audit the resolution of %s", finding.key)

    def _unavailable(self, exc: BaseException) -> None:
        logger.warning("drift: snapshot failed: %s", exc)
        raise_alert(
            "guard.drift.unavailable",
            severity=WARNING,
            summary=_("Drift check impossible, retrying: %(error)s") % {"error": exc},
            details={"error": str(exc), "type": type(exc).__name__},
            dedupe_key="guard.drift.unavailable",
        )


def _terminate(proc: subprocess.Popen[str], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
