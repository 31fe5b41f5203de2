"""The probe's port scan: which host:port pairs to try from outside, and what an answer means.

Being reachable is judged too (the policy's `exposure_mode`), because the incident's own
pattern changes nothing on this host: a perimeter that forwards the portal's port through
the clinic's network makes the portal answer from outside with the source address of an
allowed LAN host. Each round the fetcher also tries a TCP connect, from the vantage point,
to every base URL's host on: the guarded ports, the base URLs' ports, the ports this host
listens on (psutil; loopback-only sockets excepted) and a short list of usual service ports.
In `internal` mode any connect that succeeds is an exposure (LEAK), unless the port belongs
to a listener declared `outside`; in `public` mode only the portal's own port may answer,
and its login page must be the portal's. While a maintenance window is open the ports a
window may open answer as a WARNING, not a LEAK: the window is why (drift follows the same
rule, and alarms on what outlives the window). The vantage point is told host:port pairs
only, never which process listens or why a port is on the list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db import DatabaseError
from django.db.models import Q
from django.utils.translation import gettext as _

from vigie.guard import findings, snapshot
from vigie.guard.models import MaintenanceWindow
from vigie.guard.policy import INTERNAL, Policy
from vigie.guard.probe_outcome import ProbeRound, Verdict, result_row

logger = logging.getLogger(__name__)

# The port scan: services a careless opening exposes first (remote shells and desktops,
# databases, caches, HL7, the usual web ports a perimeter forwards to the portal).
USUAL_PORTS = (
    21,
    22,
    23,
    25,
    80,
    111,
    139,
    443,
    445,
    2049,
    2575,
    3306,
    3389,
    5432,
    5900,
    6379,
    8000,
    8080,
    8443,
    8888,
    9200,
    11211,
    27017,
)
CONNECT_TIMEOUT = 2.0
# At most this many host:port connects a round (32 at a time, 2 s each when all are
# silently dropped: 16 s, inside the 30 s interval with the HTTP requests beside them).
MAX_CONNECTS = 256


@dataclass(frozen=True)
class PortFacts:
    """What the guard knows of the ports it asks about; never sent to the vantage point."""

    mode: str
    guarded: frozenset[int]
    portal: frozenset[int]  # the base URLs' ports: where outsiders reach the portal
    outside: Mapping[int, str]  # declared reachable from outside → listener name
    listening: Mapping[int, str]  # this host listens there → process name(s)
    windows: frozenset[int]  # ports a maintenance window may have opened this round


def host_listening_ports() -> dict[int, str]:
    """TCP ports this host listens on beyond loopback → the processes listening there."""
    found: dict[int, set[str]] = {}
    for sock in snapshot.listening_sockets():
        if sock.proto != "tcp" or findings.is_loopback(sock.address):
            continue
        found.setdefault(sock.port, set()).add(sock.process or "?")
    return {port: ", ".join(sorted(names)) for port, names in found.items()}


def ports_to_scan(policy: Policy) -> dict[int, str]:
    """The ports tried beyond the policy's own: this host's listeners and the usual ones."""
    ports = dict.fromkeys(USUAL_PORTS, "")
    try:
        ports.update(host_listening_ports())
    except Exception:  # psutil may be refused; the usual ports are still worth trying
        logger.exception("probe: cannot list this host's listening ports")
    return ports


def portal_ports_by_host(policy: Policy) -> dict[str, frozenset[int]]:
    """Each base URL's host → the ports outsiders use for the portal there."""
    hosts: dict[str, set[int]] = {}
    for url in policy.probe_base_urls:
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            hosts.setdefault(parts.hostname, set()).add(port)
    return {host: frozenset(ports) for host, ports in hosts.items()}


def target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request_target(url: str) -> str:
    """The host:port a URL's request connects to."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return target(parts.hostname or "", port)


def connect_targets(
    policy: Policy, bases: Mapping[str, frozenset[int]], extra: Mapping[int, str]
) -> dict[str, tuple[str, int]]:
    """host:port → (host, port) for every connect of the round, at most MAX_CONNECTS."""
    targets: dict[str, tuple[str, int]] = {}
    for host, portal_ports in sorted(bases.items()):
        # Sorted together: the vantage point cannot tell a listening port from a usual one.
        for port in sorted(set(extra) | set(policy.public_ports) | portal_ports):
            targets[target(host, port)] = (host, port)
    if len(targets) > MAX_CONNECTS:
        logger.warning("probe: %s ports to try, only %s this round", len(targets), MAX_CONNECTS)
        targets = dict(list(targets.items())[:MAX_CONNECTS])
    return targets


def window_ports(policy: Policy, since: datetime, until: datetime) -> frozenset[int]:
    """Ports a window may have opened at some moment of [since, until]: every port a window
    may open if any window was open then (the perimeter may map another port to it)."""
    try:
        opened = (
            MaintenanceWindow.objects.filter(opened_at__lte=until, ends_at__gte=since)
            .filter(Q(closed_at__isnull=True) | Q(closed_at__gte=since))
            .values_list("port", flat=True)
        )
        ports = set(opened)
    except DatabaseError:
        logger.exception("probe: cannot read maintenance windows; judging as if none")
        return frozenset()
    return frozenset(ports | set(policy.maintenance_ports)) if ports else frozenset()


def port_facts(
    policy: Policy,
    bases: Mapping[str, frozenset[int]],
    extra: Mapping[int, str],
    windows: frozenset[int],
) -> PortFacts:
    return PortFacts(
        mode=policy.exposure_mode,
        guarded=frozenset(policy.public_ports),
        portal=frozenset().union(*bases.values()),
        outside=policy.outside_ports,
        listening={port: what for port, what in extra.items() if what},
        windows=windows,
    )


def judge_port(port: int, state: str, facts: PortFacts) -> tuple[str, str]:
    """(verdict, detail) for one TCP connect from the vantage point."""
    if state != "open":
        return Verdict.UNREACHABLE, state
    if port in facts.outside:
        return Verdict.OK, _(
            "port %(port)s answers from outside, as declared (listener %(name)s)"
        ) % {"port": port, "name": facts.outside[port]}
    if port in facts.windows and (port in facts.guarded or port in facts.portal):
        return Verdict.WARNING, _(
            "port %(port)s answers from outside while a maintenance window is open"
        ) % {"port": port}
    if facts.mode != INTERNAL and port in facts.portal:
        return Verdict.OK, _("port %(port)s is the portal's (public exposure)") % {"port": port}
    if port in facts.listening:
        why = _(
            "this host listens on it (%(process)s) and the policy does not declare it "
            "reachable from outside"
        ) % {"process": facts.listening[port] or "?"}
    elif port in facts.guarded:
        why = _("it is a port the firewall guards")
    elif port in facts.portal:
        why = _("it is where outsiders reach the portal")
    else:
        why = _("a service answers on it at the portal's address")
    if facts.mode == INTERNAL:
        rule = _("the policy says the exposure is internal")
    else:
        rule = _("only the portal's port may answer (public exposure)")
    return Verdict.LEAK, _(
        "port %(port)s accepts TCP connections from outside: %(why)s; %(rule)s"
    ) % {"port": port, "why": why, "rule": rule}


def judge_scan(
    outcome: ProbeRound,
    at: datetime,
    facts: PortFacts,
    targets: dict[str, tuple[str, int]],
    states: Any,
) -> None:
    """One row per port that answered, one row per host for the ports that did not."""
    closed: dict[str, list[int]] = {}
    for name, (host, port) in targets.items():
        state = states.get(name) if isinstance(states, dict) else None
        if not isinstance(state, str):
            outcome.results.append(
                result_row(
                    outcome.round_id,
                    at,
                    f"tcp://{name}",
                    "port",
                    None,
                    Verdict.ERROR,
                    _("the fetcher gave no answer for this port"),
                )
            )
            continue
        verdict, detail = judge_port(port, state, facts)
        if verdict == Verdict.UNREACHABLE:
            closed.setdefault(host, []).append(port)
            continue
        if verdict == Verdict.LEAK:
            # A port that accepts a connection discloses nothing by itself.
            outcome.reachable[f"tcp://{name}"] = name
        outcome.results.append(
            result_row(outcome.round_id, at, f"tcp://{name}", "port", None, verdict, detail)
        )
    for host, ports in closed.items():
        listed = ", ".join(str(p) for p in sorted(ports))
        outcome.results.append(
            result_row(
                outcome.round_id,
                at,
                "tcp://" + (f"[{host}]" if ":" in host else host),
                "ports",
                None,
                Verdict.UNREACHABLE,
                _("%(count)s port(s) closed from outside: %(ports)s")
                % {"count": len(ports), "ports": listed},
            )
        )
