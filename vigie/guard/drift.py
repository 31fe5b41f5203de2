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
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psutil
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.alerts.models import Alert
from vigie.alerts.services import raise_alert
from vigie.audit.log import AuditUnavailable, record
from vigie.guard import lockdown, nft, probe
from vigie.guard.models import DriftEvent, MaintenanceWindow
from vigie.guard.policy import Policy

logger = logging.getLogger(__name__)

WARNING = "warning"
CRITICAL = "critical"
ALERT_KIND = "guard.drift"
VIGIE_TABLE = (nft.TABLE_FAMILY, nft.TABLE_NAME)
# Sets of Vigie's table whose elements the policy states exactly.
POLICY_SETS = ("guarded_ports", "allowed4", "allowed6")
_VERDICTS = ("accept", "drop", "reject", "queue", "jump", "goto", "return", "continue")
# Values that change with traffic or time, not with configuration: counters, quotas used,
# element expiry, and handles (nft renumbers them when a rule is re-created identically).
_VOLATILE_KEYS = frozenset({"handle", "packets", "bytes", "used", "used_unit", "expires"})
_MAX_TEXT = 200
_MAX_LISTED = 50


# --- what a snapshot holds ----------------------------------------------------------------


@dataclass(frozen=True)
class ListeningSocket:
    address: str
    port: int
    proto: str  # "tcp" or "udp"
    process: str  # "" when the owner is unknown (kernel socket, process gone)
    pid: int | None

    @property
    def endpoint(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else f"{self.address}:{self.port}"
        )

    def describe(self) -> str:
        owner = self.process or _("unknown process")
        if self.pid is not None:
            owner = f"{owner} (pid {self.pid})"
        return f"{self.proto} {self.endpoint} — {owner}"


@dataclass(frozen=True)
class Snapshot:
    ruleset: dict[str, Any]
    listeners: tuple[ListeningSocket, ...]
    taken_at: datetime


@dataclass(frozen=True)
class Finding:
    """One difference. `key` stays the same while the difference stays the same."""

    key: str
    kind: str  # a DriftEvent.Kind value
    severity: str  # "warning" or "critical"
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    # True when the difference may let traffic reach a guarded port (or a local service).
    exposing: bool = False
    # True when it is in Vigie's own table, which the guard repairs by reinstalling it.
    repairable: bool = False


def listening_sockets() -> tuple[ListeningSocket, ...]:
    """TCP sockets in LISTEN state and bound UDP sockets with no peer, in this netns."""
    names: dict[int, str] = {}
    found: set[ListeningSocket] = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.type == socket.SOCK_STREAM:
            if conn.status != psutil.CONN_LISTEN:
                continue
            proto = "tcp"
        elif conn.type == socket.SOCK_DGRAM:
            if conn.raddr:  # a connected UDP socket is a client, not a service
                continue
            proto = "udp"
        else:
            continue
        if not conn.laddr:
            continue
        pid = conn.pid
        found.add(
            ListeningSocket(
                address=str(conn.laddr.ip),
                port=int(conn.laddr.port),
                proto=proto,
                process=_process_name(pid, names),
                pid=pid,
            )
        )
    return tuple(sorted(found, key=lambda s: (s.proto, s.port, s.address, s.process)))


def _process_name(pid: int | None, cache: dict[int, str]) -> str:
    if pid is None:
        return ""
    if pid not in cache:
        try:
            cache[pid] = str(psutil.Process(pid).name())
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            # The process may have exited between the two reads; the socket still counts.
            cache[pid] = ""
    return cache[pid]


def take_snapshot() -> Snapshot:
    """The whole ruleset and every listening socket, now. Raises NftError/NftUnavailable."""
    ruleset = nft.ruleset()
    return Snapshot(ruleset=ruleset, listeners=listening_sockets(), taken_at=timezone.now())


# --- the ruleset, normalised --------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    identity: str  # canonical JSON of what the rule does (no handle, no counter values)
    text: str  # readable, in nft's own words as far as possible
    verdict: str  # the last verdict statement ("accept", "drop", "jump x"…) or ""


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    hook: str  # "" for a regular (non-base) chain
    policy: str  # "" for a regular chain
    priority: int | None  # None for a regular chain
    definition: str  # canonical JSON of type, hook, priority, policy, device
    rules: tuple[Rule, ...]

    @property
    def label(self) -> str:
        return f"{self.family} {self.table} {self.name}"

    @property
    def on_input(self) -> bool:
        return self.hook == "input"

    @property
    def before_vigie(self) -> bool:
        """Does this chain see incoming packets before Vigie's input chain judges them?"""
        if self.hook in ("ingress", "prerouting"):
            return True
        # Same hook, same priority: nftables does not say which runs first; assume the worst.
        return self.on_input and self.priority is not None and self.priority <= nft.CHAIN_PRIORITY


@dataclass(frozen=True)
class Table:
    family: str
    name: str
    chains: dict[str, Chain]
    # "set guarded_ports", "map x", "counter y"… → canonical JSON of its definition.
    objects: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.family} {self.name}"

    @property
    def is_vigie(self) -> bool:
        return (self.family, self.name) == VIGIE_TABLE


@dataclass(frozen=True)
class Ruleset:
    tables: dict[tuple[str, str], Table]


@dataclass(frozen=True)
class Baseline:
    """The ruleset as it was when the watcher started (or an admin accepted it)."""

    ruleset: Ruleset
    taken_at: datetime

    @classmethod
    def of(cls, snapshot: Snapshot) -> Baseline:
        return cls(ruleset=parse_ruleset(snapshot.ruleset), taken_at=snapshot.taken_at)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _only(obj: Any) -> tuple[str, Any] | None:
    if isinstance(obj, dict) and len(obj) == 1:
        ((key, body),) = obj.items()
        return str(key), body
    return None


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list):
        return "{ " + ", ".join(_value_text(v) for v in value) + " }"
    single = _only(value)
    if single is not None:
        key, body = single
        if isinstance(body, dict):
            if key == "payload" and "protocol" in body:
                return f"{body['protocol']} {body.get('field', '')}".strip()
            if key == "meta":
                return f"meta {body.get('key', '')}"
            if key == "ct":
                direction = f" {body['dir']}" if body.get("dir") else ""
                return f"ct{direction} {body.get('key', '')}"
            if key == "prefix":
                return f"{_value_text(body.get('addr'))}/{body.get('len')}"
            if key == "elem":
                return _value_text(body.get("val"))
        if key == "concat" and isinstance(body, list):
            return " . ".join(_value_text(v) for v in body)
        if key == "range" and isinstance(body, list) and len(body) == 2:
            return f"{_value_text(body[0])}-{_value_text(body[1])}"
        if key == "set":
            return _value_text(body if isinstance(body, list) else [body])
    return _canonical(value)


def _statement_text(statement: Any) -> str:
    single = _only(statement)
    if single is None:
        return _canonical(statement)
    key, body = single
    if key == "match" and isinstance(body, dict):
        op = body.get("op", "==")
        shown = "" if op in ("==", "in") else f" {op}"
        return f"{_value_text(body.get('left'))}{shown} {_value_text(body.get('right'))}"
    if key in ("jump", "goto") and isinstance(body, dict):
        return f"{key} {body.get('target', '')}"
    if key == "reject":
        kind = body.get("type") if isinstance(body, dict) else None
        return f"reject with {kind}" if kind else "reject"
    if key == "mangle" and isinstance(body, dict):
        return f"{_value_text(body.get('key'))} set {_value_text(body.get('value'))}"
    if key == "counter" and (body is None or isinstance(body, dict)):
        return "counter"
    if key in ("snat", "dnat", "redirect", "masquerade") and isinstance(body, dict):
        target = ":".join(
            _value_text(body[part]) for part in ("addr", "port") if body.get(part) is not None
        )
        return f"{key} to {target}" if target else key
    if body is None:
        return key
    return f"{key} {_value_text(body)}"


def _verdict(expr: list[Any]) -> str:
    verdict = ""
    for statement in expr:
        single = _only(statement)
        if single is None or single[0] not in _VERDICTS:
            continue
        key, body = single
        if key in ("jump", "goto") and isinstance(body, dict):
            verdict = f"{key} {body.get('target', '')}"
        else:
            verdict = key
    return verdict


def _rule(body: dict[str, Any]) -> Rule:
    expr = body.get("expr") or []
    if not isinstance(expr, list):
        expr = [expr]
    text = " ".join(_statement_text(s) for s in expr)
    comment = body.get("comment")
    if comment:
        text = f'{text} comment "{comment}"'
    identity = _canonical({"expr": _strip(expr), "comment": comment or ""})
    return Rule(identity=identity, text=text[:_MAX_TEXT], verdict=_verdict(expr))


def _object_definition(kind: str, body: dict[str, Any], *, vigie: bool) -> str:
    definition = {k: v for k, v in _strip(body).items() if k not in ("family", "table", "name")}
    if kind in ("set", "map"):
        flags = definition.get("flags") or []
        flags = flags if isinstance(flags, list) else [flags]
        # Vigie's set elements are checked against the policy (or are windows); dynamic
        # sets (fail2ban bans, meters) fill themselves with traffic: neither is drift here.
        if vigie or "dynamic" in flags or "timeout" in flags:
            definition.pop("elem", None)
        elif isinstance(definition.get("elem"), list):
            definition["elem"] = sorted(definition["elem"], key=_canonical)
    return _canonical(definition)


def _priority(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def parse_ruleset(data: dict[str, Any]) -> Ruleset:
    """nft's JSON → tables, chains with their rules in order, and other objects."""
    table_ids: list[tuple[str, str]] = []
    chain_bodies: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[Rule]] = {}
    objects: dict[tuple[str, str], dict[str, str]] = {}
    for item in data.get("nftables", []) or []:
        single = _only(item)
        if single is None or not isinstance(single[1], dict):
            continue
        kind, body = single
        family = str(body.get("family", ""))
        if kind == "metainfo":
            continue
        if kind == "table":
            table_ids.append((family, str(body.get("name", ""))))
        elif kind == "chain":
            chain_bodies[(family, str(body.get("table", "")), str(body.get("name", "")))] = body
        elif kind == "rule":
            chain_id = (family, str(body.get("table", "")), str(body.get("chain", "")))
            rules.setdefault(chain_id, []).append(_rule(body))
        elif "table" in body and "name" in body:
            table_id = (family, str(body["table"]))
            objects.setdefault(table_id, {})[f"{kind} {body['name']}"] = _object_definition(
                kind, body, vigie=table_id == VIGIE_TABLE
            )
    chains: dict[tuple[str, str], dict[str, Chain]] = {}
    for (family, table, name), body in chain_bodies.items():
        definition = {k: v for k, v in _strip(body).items() if k not in ("family", "table", "name")}
        chains.setdefault((family, table), {})[name] = Chain(
            family=family,
            table=table,
            name=name,
            hook=str(body.get("hook", "")),
            policy=str(body.get("policy", "")),
            priority=_priority(body.get("prio")),
            definition=_canonical(definition),
            rules=tuple(rules.get((family, table, name), [])),
        )
    return Ruleset(
        tables={
            tid: Table(
                family=tid[0],
                name=tid[1],
                chains=chains.get(tid, {}),
                objects=objects.get(tid, {}),
            )
            for tid in table_ids
        }
    )


# --- the comparison -----------------------------------------------------------------------


def compare(policy: Policy, snapshot: Snapshot, baseline: Baseline) -> list[Finding]:
    """Every difference between the snapshot and what the policy and the baseline allow."""
    current = parse_ruleset(snapshot.ruleset)
    findings = _vigie_findings(policy, snapshot.ruleset, current, baseline.ruleset)
    for table_id in sorted(set(current.tables) | set(baseline.ruleset.tables)):
        if table_id == VIGIE_TABLE:
            continue
        findings += _table_findings(
            baseline.ruleset.tables.get(table_id), current.tables.get(table_id)
        )
    findings += _listener_findings(policy, snapshot.listeners)
    return findings


def _vigie_findings(
    policy: Policy, data: dict[str, Any], current: Ruleset, baseline: Ruleset
) -> list[Finding]:
    table = current.tables.get(VIGIE_TABLE)
    ports = ", ".join(str(p) for p in policy.public_ports)
    if table is None:
        return [
            Finding(
                key="vigie:table-missing",
                kind=DriftEvent.Kind.RULESET,
                severity=CRITICAL,
                summary=_(
                    "Vigie's firewall table %(table)s is gone (ruleset flushed or table "
                    "deleted by hand): nothing guards ports %(ports)s any more"
                )
                % {"table": nft.TABLE, "ports": ports or "-"},
                details={"table": nft.TABLE, "guarded_ports": list(policy.public_ports)},
                exposing=True,
                repairable=True,
            )
        ]
    findings = _policy_set_findings(policy, data)
    before = baseline.tables.get(VIGIE_TABLE)
    # Without a starting state of the table there is nothing to hold its rules to (the
    # policy's sets above still are); the guard installs the table before it starts.
    if before is not None:
        findings += _table_findings(before, table)
    return [replace(f, repairable=True) for f in findings]


def _element_text(element: Any) -> str:
    single = _only(element)
    if single is not None and single[0] == "elem" and isinstance(single[1], dict):
        return _element_text(single[1].get("val"))
    text = _value_text(element)
    if "-" in text:  # an interval nft could not write as a prefix
        return text
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _set_elements(data: dict[str, Any], name: str) -> set[str] | None:
    for item in data.get("nftables", []) or []:
        single = _only(item)
        if single is None or single[0] != "set" or not isinstance(single[1], dict):
            continue
        body = single[1]
        if (body.get("family"), body.get("table"), body.get("name")) == (*VIGIE_TABLE, name):
            return {_element_text(e) for e in body.get("elem", []) or []}
    return None


def _expected_sets(policy: Policy) -> dict[str, set[str]]:
    networks = [ipaddress.ip_network(s, strict=False) for s in policy.allowed_sources]
    return {
        "guarded_ports": {str(p) for p in policy.public_ports},
        "allowed4": {str(n) for n in networks if n.version == 4},
        "allowed6": {str(n) for n in networks if n.version == 6},
    }


def _policy_set_findings(policy: Policy, data: dict[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    ports = ", ".join(str(p) for p in policy.public_ports) or "-"
    for name, expected in _expected_sets(policy).items():
        actual = _set_elements(data, name)
        where = f"{nft.TABLE} {name}"
        if actual is None:
            findings.append(
                Finding(
                    key=f"vigie:set-missing:{name}",
                    kind=DriftEvent.Kind.RULESET,
                    severity=CRITICAL,
                    summary=_("Set %(set)s is missing from Vigie's firewall table")
                    % {"set": where},
                    details={"set": where},
                )
            )
            continue
        for element in sorted(actual - expected):
            if name == "guarded_ports":
                summary = _("Port %(port)s added by hand to %(set)s (not in the policy)")
                exposing = False
            else:
                summary = _(
                    "Source %(source)s added by hand to %(set)s: it may now reach ports %(ports)s"
                )
                exposing = True
            findings.append(
                Finding(
                    key=f"vigie:set:{name}:+:{element}",
                    kind=DriftEvent.Kind.RULESET,
                    severity=CRITICAL,
                    summary=summary
                    % {"port": element, "source": element, "set": where, "ports": ports},
                    details={"set": where, "added": element, "policy": sorted(expected)},
                    exposing=exposing,
                )
            )
        for element in sorted(expected - actual):
            if name == "guarded_ports":
                summary = _(
                    "Port %(port)s removed by hand from %(set)s: any address may now reach it"
                )
                exposing = True
            else:
                summary = _("Source %(source)s removed by hand from %(set)s (policy allows it)")
                exposing = False
            findings.append(
                Finding(
                    key=f"vigie:set:{name}:-:{element}",
                    kind=DriftEvent.Kind.RULESET,
                    severity=CRITICAL,
                    summary=summary % {"port": element, "source": element, "set": where},
                    details={"set": where, "removed": element, "policy": sorted(expected)},
                    exposing=exposing,
                )
            )
    return findings


def _opens_input(rule: Rule, chain: Chain) -> bool:
    # An accept added to an input-hook chain is how a firewall is "opened" by hand (the
    # incident's gesture). In Vigie's own chain it exposes the guarded ports. Anywhere else it
    # cannot: in nftables an accept ends only the chain's own hook function, every other base
    # chain on the hook still runs, and Vigie's reset is final (tested with real packets in
    # test_nft.py). Such a change is recorded as drift, not answered with lockdown.
    return chain.on_input and rule.verdict == "accept"


# Statements that rewrite where a packet comes from. Run before Vigie's chain judges the
# packet, they can make a stranger look like an allowed source: the one change in another
# table that can get past Vigie's reset (tested with real packets in test_nft.py).
_SOURCE_FIELDS = frozenset({("ip", "saddr"), ("ip6", "saddr")})


def _bypasses_vigie(rule: Rule, chain: Chain) -> bool:
    if not chain.before_vigie:
        return False
    try:
        expr = json.loads(rule.identity).get("expr") or []
    except ValueError:
        return False
    for statement in expr:
        single = _only(statement)
        if single is None or single[0] != "mangle" or not isinstance(single[1], dict):
            continue
        payload = (single[1].get("key") or {}).get("payload") or {}
        if (payload.get("protocol"), payload.get("field")) in _SOURCE_FIELDS:
            return True
    return False


def _closes_input(rule: Rule, chain: Chain) -> bool:
    return chain.on_input and rule.verdict.split(" ")[0] in ("drop", "reject")


def _chain_listing(chain: Chain) -> list[str]:
    return [rule.text for rule in chain.rules[:_MAX_LISTED]]


def _table_findings(before: Table | None, after: Table | None) -> list[Finding]:
    """Differences in one table; Vigie's own are critical, anyone else's usually warnings."""
    if after is None:
        return [_table_removed(before)] if before is not None else []
    if before is None:
        return [_table_added(after)]
    vigie = after.is_vigie
    findings: list[Finding] = []
    for name in sorted(set(before.chains) | set(after.chains)):
        old, new = before.chains.get(name), after.chains.get(name)
        if new is None and old is not None:
            findings.append(_chain_removed(old, vigie=vigie))
        elif old is None and new is not None:
            findings.append(_chain_added(new, vigie=vigie))
        elif old is not None and new is not None:
            findings += _chain_findings(old, new, vigie=vigie)
    for name in sorted(set(before.objects) | set(after.objects)):
        old_def, new_def = before.objects.get(name), after.objects.get(name)
        if old_def == new_def:
            continue
        window_set = vigie and name.split(" ", 1)[-1] in nft.WINDOW_SETS
        if new_def is None:
            change, summary = "-", _("%(object)s removed from table %(table)s")
        elif old_def is None:
            change, summary = "+", _("%(object)s added to table %(table)s")
        else:
            change, summary = "~", _("%(object)s changed in table %(table)s")
        findings.append(
            Finding(
                key=f"object:{change}:{after.label}:{name}:{_digest(new_def or '')}",
                kind=DriftEvent.Kind.WINDOW_SET if window_set else DriftEvent.Kind.RULESET,
                severity=CRITICAL if vigie else WARNING,
                summary=summary % {"object": name, "table": after.label},
                details={"table": after.label, "object": name, "before": old_def, "after": new_def},
            )
        )
    return findings


def _table_removed(table: Table) -> Finding:
    closed = [
        rule.text
        for chain in table.chains.values()
        for rule in chain.rules
        if _closes_input(rule, chain)
    ]
    return Finding(
        key=f"table:-:{table.label}",
        kind=DriftEvent.Kind.RULESET,
        # The host's firewall losing its drop rules is the incident's gesture, but Vigie's
        # table still guards the portal's ports: recorded and told, not a lockdown.
        severity=WARNING,
        summary=_("Firewall table %(table)s removed by hand") % {"table": table.label},
        details={"table": table.label, "chains": sorted(table.chains), "drop_rules": closed},
    )


def _table_added(table: Table) -> Finding:
    opening = [
        f"{chain.name}: {rule.text}"
        for chain in table.chains.values()
        for rule in chain.rules
        if _opens_input(rule, chain)
    ]
    bypassing = [
        f"{chain.name}: {rule.text}"
        for chain in table.chains.values()
        for rule in chain.rules
        if _bypasses_vigie(rule, chain)
    ]
    content = _canonical(
        {
            "chains": {
                n: [c.definition, [r.identity for r in c.rules]] for n, c in table.chains.items()
            },
            "objects": table.objects,
        }
    )
    if bypassing:
        summary = _(
            "Firewall table %(table)s added by hand, rewriting source addresses before "
            "Vigie's chain: %(rules)s"
        ) % {"table": table.label, "rules": "; ".join(bypassing)[:_MAX_TEXT]}
    elif opening:
        summary = _("Firewall table %(table)s added by hand, accepting input: %(rules)s") % {
            "table": table.label,
            "rules": "; ".join(opening)[:_MAX_TEXT],
        }
    else:
        summary = _("Firewall table %(table)s added by hand") % {"table": table.label}
    return Finding(
        # The content is in the key: a later change to the new table is a new finding.
        key=f"table:+:{table.label}:{_digest(content)}",
        kind=DriftEvent.Kind.RULESET,
        severity=CRITICAL if bypassing else WARNING,
        summary=summary,
        details={
            "table": table.label,
            "chains": {n: _chain_listing(c) for n, c in table.chains.items()},
            "objects": sorted(table.objects),
        },
        exposing=bool(bypassing),
    )


def _chain_removed(chain: Chain, *, vigie: bool) -> Finding:
    return Finding(
        key=f"chain:-:{chain.label}",
        kind=DriftEvent.Kind.RULESET,
        severity=CRITICAL if vigie else WARNING,
        summary=_("Chain %(chain)s removed by hand") % {"chain": chain.label},
        details={"chain": chain.label, "rules": _chain_listing(chain)},
        # Vigie's input chain is the guard itself.
        exposing=vigie and chain.on_input,
    )


def _chain_added(chain: Chain, *, vigie: bool) -> Finding:
    opening = [r.text for r in chain.rules if _opens_input(r, chain)] if vigie else []
    bypassing = [r.text for r in chain.rules if _bypasses_vigie(r, chain)] if not vigie else []
    content = _canonical([chain.definition, [r.identity for r in chain.rules]])
    return Finding(
        key=f"chain:+:{chain.label}:{_digest(content)}",
        kind=DriftEvent.Kind.RULESET,
        severity=CRITICAL if vigie or bypassing else WARNING,
        summary=_("Chain %(chain)s added by hand (%(hook)s, %(rules)s rules)")
        % {"chain": chain.label, "hook": chain.hook or "no hook", "rules": len(chain.rules)},
        details={
            "chain": chain.label,
            "definition": chain.definition,
            "rules": _chain_listing(chain),
        },
        exposing=bool(opening or bypassing),
    )


def _chain_findings(old: Chain, new: Chain, *, vigie: bool) -> list[Finding]:
    findings: list[Finding] = []
    if old.definition != new.definition:
        # A chain that filtered input and no longer does, or whose default became accept.
        opens = old.on_input and (
            not new.on_input or (old.policy != "accept" and new.policy == "accept")
        )
        findings.append(
            Finding(
                key=f"chain:~:{new.label}:{_digest(new.definition)}",
                kind=DriftEvent.Kind.RULESET,
                severity=CRITICAL if vigie else WARNING,
                summary=_("Chain %(chain)s redefined by hand: %(before)s → %(after)s")
                % {"chain": new.label, "before": old.definition, "after": new.definition},
                details={"chain": new.label, "before": old.definition, "after": new.definition},
                # Only Vigie's chain guards the portal's ports (see _opens_input).
                exposing=vigie and opens,
            )
        )
    before = Counter(r.identity for r in old.rules)
    after = Counter(r.identity for r in new.rules)
    texts = {r.identity: r for r in (*old.rules, *new.rules)}
    for identity, count in sorted((after - before).items()):
        rule = texts[identity]
        exposing = (vigie and _opens_input(rule, new)) or (not vigie and _bypasses_vigie(rule, new))
        for occurrence in range(count):
            findings.append(
                Finding(
                    key=f"rule:+:{new.label}:{_digest(identity)}:{occurrence}",
                    kind=DriftEvent.Kind.RULESET,
                    severity=CRITICAL if vigie or exposing else WARNING,
                    summary=_("Rule added by hand to chain %(chain)s: “%(rule)s”")
                    % {"chain": new.label, "rule": rule.text},
                    details={"chain": new.label, "rule": rule.text, "verdict": rule.verdict},
                    exposing=exposing,
                )
            )
    for identity, count in sorted((before - after).items()):
        rule = texts[identity]
        closed = _closes_input(rule, old)
        for occurrence in range(count):
            findings.append(
                Finding(
                    key=f"rule:-:{old.label}:{_digest(identity)}:{occurrence}",
                    kind=DriftEvent.Kind.RULESET,
                    severity=CRITICAL if vigie else WARNING,
                    summary=_("Rule removed by hand from chain %(chain)s: “%(rule)s”")
                    % {"chain": old.label, "rule": rule.text},
                    details={"chain": old.label, "rule": rule.text, "verdict": rule.verdict},
                    # Without Vigie's reject, the guarded ports answer anyone.
                    exposing=vigie and closed,
                )
            )
    order_old = [r.identity for r in old.rules]
    order_new = [r.identity for r in new.rules]
    if before == after and order_old != order_new:
        findings.append(
            Finding(
                key=f"rule-order:{new.label}:{_digest(_canonical(order_new))}",
                kind=DriftEvent.Kind.RULESET,
                severity=CRITICAL if vigie else WARNING,
                summary=_("Rules of chain %(chain)s reordered by hand") % {"chain": new.label},
                details={
                    "chain": new.label,
                    "before": [r.text for r in old.rules],
                    "after": [r.text for r in new.rules],
                },
            )
        )
    return findings


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _declared(policy: Policy, sock: ListeningSocket) -> bool:
    for listener in policy.listeners:
        try:
            if listener.matches(sock.address.split("%", 1)[0], sock.port, sock.process):
                return True
        except ValueError:
            continue
    return False


def _listener_findings(policy: Policy, sockets: tuple[ListeningSocket, ...]) -> list[Finding]:
    findings: list[Finding] = []
    for sock in sockets:
        if _declared(policy, sock):
            continue
        loopback = _is_loopback(sock.address)
        local = next(
            (
                lst
                for lst in policy.listeners
                if lst.exposure == "local"
                and lst.port == sock.port
                and (not lst.process or sock.process.startswith(lst.process))
            ),
            None,
        )
        details = {
            "proto": sock.proto,
            "address": sock.address,
            "port": sock.port,
            "process": sock.process,
            "pid": sock.pid,
        }
        if local is not None and not loopback:
            findings.append(
                Finding(
                    key=f"listener:exposed-local:{local.name}:{sock.proto}:{sock.endpoint}",
                    kind=DriftEvent.Kind.LISTENER,
                    severity=CRITICAL,
                    summary=_(
                        "Local-only service %(name)s listens on %(socket)s, not on loopback: "
                        "it is reachable from the network"
                    )
                    % {"name": local.name, "socket": sock.describe()},
                    details={**details, "declared": f"{local.address}:{local.port}"},
                    exposing=True,
                )
            )
            continue
        findings.append(
            Finding(
                key=f"listener:undeclared:{sock.proto}:{sock.endpoint}:{sock.process}",
                kind=DriftEvent.Kind.LISTENER,
                severity=WARNING if loopback else CRITICAL,
                summary=_("Undeclared listening socket %(socket)s (not in the policy)")
                % {"socket": sock.describe()},
                details=details,
            )
        )
    return findings


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
            lambda port: probe.port_closed_from_outside(policy, port)
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
                    details=json.loads(_canonical(details)),
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
            "changes": [f.summary for f in fixed[:_MAX_LISTED]],
            "exposing": exposing,
            "during_window": in_window,
        }
        # Told at once: the outside check below can take seconds (an ssh round trip).
        alert = raise_alert(
            ALERT_KIND,
            severity=CRITICAL if any(f.severity == CRITICAL for f in fixed) else WARNING,
            summary=summary,
            details=details,
            dedupe_key=f"{ALERT_KIND}.repaired:{_digest(_canonical(sorted(details['keys'])))}",
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
                    summary=summary[:500], details=json.loads(_canonical(details))
                )
            if lock:
                self._lock_down(summary, details)
        try:
            record(
                "guard.table.repaired",
                reason=summary,
                extra={
                    "keys": details["keys"][:_MAX_LISTED],
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
