"""Asking the vantage point a second time whether ports accept connections from outside.

Within a round: a round whose only leaks are reachability (a port accepting TCP, the login
page answering in `internal` mode: nothing disclosed) asks again, RECHECK_SECONDS later,
whether those ports still answer from outside before it locks down. A round that starts
while somebody flushes the ruleset sees the port open for the ~0.3 s the guard takes to put
its table back (drift.py); locking the doctors out for what the repair already closed would
be wrong, and hiding it would be worse: the critical alert says the port was reachable then
and is closed now. Still reachable, or nothing could tell → lockdown, as before. A leak that
discloses data (document bytes, a 200 on a protected path) locks down at once, without
asking again.

After a maintenance window, and when drift finds a port open: `port_closed_from_outside`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from urllib.parse import urlsplit

from django.utils import timezone

from vigie.guard import probe_vantage
from vigie.guard.policy import Policy
from vigie.guard.probe_outcome import ProbeRound, Recheck
from vigie.guard.probe_ports import CONNECT_TIMEOUT, target
from vigie.guard.probe_vantage import FetchFailed

logger = logging.getLogger(__name__)

# How long a reachability-only exposure waits before it is checked again from outside: the
# guard's own repair of a flushed table takes ~0.3 s (drift.py); this leaves it ample room
# and stays far inside the probe interval (perimeter forwarding is still caught in ≤ 30 s).
RECHECK_SECONDS = 1.5


def recheck(policy: Policy, outcome: ProbeRound, *, seen_at: datetime) -> Recheck:
    """Ask the vantage point again, RECHECK_SECONDS later, whether the ports this round
    found reachable still accept connections (the guard may have repaired its table)."""
    targets = sorted(set(outcome.reachable.values()))
    time.sleep(RECHECK_SECONDS)
    job = {"requests": [], "connect": targets, "connect_timeout": CONNECT_TIMEOUT}
    try:
        states = probe_vantage.run_fetcher(policy, job).get("connect")
        if not isinstance(states, dict) or set(states) != set(targets):
            raise FetchFailed("the fetcher's answer does not match the ports asked")
    except FetchFailed as exc:
        logger.warning("probe: cannot check again from outside: %s", exc)
        return Recheck(seen_at, timezone.now(), still_open=[], closed=[], error=str(exc))
    still_open = [t for t in targets if states[t] == "open"]
    closed = [t for t in targets if states[t] != "open"]
    return Recheck(seen_at, timezone.now(), still_open=still_open, closed=closed)


def port_closed_from_outside(policy: Policy, port: int) -> bool | None:
    """From the vantage point: True if no base URL's host accepts a TCP connection on `port`,
    False if one does, None if it cannot tell (no base URLs, or the fetcher failed)."""
    hosts = sorted({urlsplit(url).hostname or "" for url in policy.probe_base_urls} - {""})
    if not hosts:
        return None
    targets = [target(host, port) for host in hosts]
    try:
        states = probe_vantage.run_fetcher(policy, {"requests": [], "connect": targets}).get(
            "connect"
        )
    except FetchFailed as exc:
        logger.warning("probe: cannot check port %s from outside: %s", port, exc)
        return None
    if not isinstance(states, dict) or set(states) != set(targets):
        return None
    return not any(state == "open" for state in states.values())
