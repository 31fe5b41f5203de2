"""The comparison: every difference between a snapshot and what the policy and the baseline allow.

Each difference is a `Finding` with a stable key, so that one that lasts is one alert. Vigie's
own table is held to the policy and the baseline, other tables (the host's firewall, Docker…)
to the baseline only, and the listening sockets to the listeners the policy declares. The
snapshot it reads is in `snapshot.py`, the watcher that alarms and repairs in `drift.py`.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from django.utils.translation import gettext as _

from vigie.guard import nft
from vigie.guard.models import DriftEvent
from vigie.guard.policy import Policy
from vigie.guard.snapshot import (
    MAX_LISTED,
    MAX_TEXT,
    VIGIE_TABLE,
    Baseline,
    Chain,
    ListeningSocket,
    Rule,
    Ruleset,
    Snapshot,
    Table,
    canonical,
    digest,
    parse_ruleset,
    sole_entry,
    value_text,
)

WARNING = "warning"
CRITICAL = "critical"
# Sets of Vigie's table whose elements the policy states exactly.
POLICY_SETS = ("guarded_ports", "allowed4", "allowed6")


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
    findings += listener_findings(policy, snapshot.listeners)
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
    single = sole_entry(element)
    if single is not None and single[0] == "elem" and isinstance(single[1], dict):
        return _element_text(single[1].get("val"))
    text = value_text(element)
    if "-" in text:  # an interval nft could not write as a prefix
        return text
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _set_elements(data: dict[str, Any], name: str) -> set[str] | None:
    for item in data.get("nftables", []) or []:
        single = sole_entry(item)
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
        findings += [
            _set_element_finding("+", name, element, expected, ports)
            for element in sorted(actual - expected)
        ]
        findings += [
            _set_element_finding("-", name, element, expected, ports)
            for element in sorted(expected - actual)
        ]
    return findings


def _set_element_finding(
    change: str, name: str, element: str, expected: set[str], ports: str
) -> Finding:
    """`element` added to (`change` "+") or removed from ("-") Vigie's set `name`, by hand.

    A port is exposed by leaving the guarded set, a source by entering an allowed one."""
    port = name == "guarded_ports"
    if change == "+":
        summary = (
            _("Port %(port)s added by hand to %(set)s (not in the policy)")
            if port
            else _("Source %(source)s added by hand to %(set)s: it may now reach ports %(ports)s")
        )
    else:
        summary = (
            _("Port %(port)s removed by hand from %(set)s: any address may now reach it")
            if port
            else _("Source %(source)s removed by hand from %(set)s (policy allows it)")
        )
    where = f"{nft.TABLE} {name}"
    return Finding(
        key=f"vigie:set:{name}:{change}:{element}",
        kind=DriftEvent.Kind.RULESET,
        severity=CRITICAL,
        summary=summary % {"port": element, "source": element, "set": where, "ports": ports},
        details={
            "set": where,
            "added" if change == "+" else "removed": element,
            "policy": sorted(expected),
        },
        exposing=port == (change == "-"),
    )


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
        single = sole_entry(statement)
        if single is None or single[0] != "mangle" or not isinstance(single[1], dict):
            continue
        payload = (single[1].get("key") or {}).get("payload") or {}
        if (payload.get("protocol"), payload.get("field")) in _SOURCE_FIELDS:
            return True
    return False


def _closes_input(rule: Rule, chain: Chain) -> bool:
    return chain.on_input and rule.verdict.split(" ")[0] in ("drop", "reject")


def _chain_listing(chain: Chain) -> list[str]:
    return [rule.text for rule in chain.rules[:MAX_LISTED]]


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
                key=f"object:{change}:{after.label}:{name}:{digest(new_def or '')}",
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
    content = canonical(
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
        ) % {"table": table.label, "rules": "; ".join(bypassing)[:MAX_TEXT]}
    elif opening:
        summary = _("Firewall table %(table)s added by hand, accepting input: %(rules)s") % {
            "table": table.label,
            "rules": "; ".join(opening)[:MAX_TEXT],
        }
    else:
        summary = _("Firewall table %(table)s added by hand") % {"table": table.label}
    return Finding(
        # The content is in the key: a later change to the new table is a new finding.
        key=f"table:+:{table.label}:{digest(content)}",
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
    content = canonical([chain.definition, [r.identity for r in chain.rules]])
    return Finding(
        key=f"chain:+:{chain.label}:{digest(content)}",
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
                key=f"chain:~:{new.label}:{digest(new.definition)}",
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
        findings += _rule_findings("+", texts[identity], count, new, vigie=vigie)
    for identity, count in sorted((before - after).items()):
        findings += _rule_findings("-", texts[identity], count, old, vigie=vigie)
    order_old = [r.identity for r in old.rules]
    order_new = [r.identity for r in new.rules]
    if before == after and order_old != order_new:
        findings.append(
            Finding(
                key=f"rule-order:{new.label}:{digest(canonical(order_new))}",
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


def _rule_findings(
    change: str, rule: Rule, count: int, chain: Chain, *, vigie: bool
) -> list[Finding]:
    """`count` copies of `rule` added to (`change` "+") or removed from ("-") `chain`."""
    if change == "+":
        summary = _("Rule added by hand to chain %(chain)s: “%(rule)s”")
        exposing = (vigie and _opens_input(rule, chain)) or (
            not vigie and _bypasses_vigie(rule, chain)
        )
    else:
        summary = _("Rule removed by hand from chain %(chain)s: “%(rule)s”")
        # Without Vigie's reject, the guarded ports answer anyone.
        exposing = vigie and _closes_input(rule, chain)
    return [
        Finding(
            key=f"rule:{change}:{chain.label}:{digest(rule.identity)}:{occurrence}",
            kind=DriftEvent.Kind.RULESET,
            severity=CRITICAL if vigie or exposing else WARNING,
            summary=summary % {"chain": chain.label, "rule": rule.text},
            details={"chain": chain.label, "rule": rule.text, "verdict": rule.verdict},
            exposing=exposing,
        )
        for occurrence in range(count)
    ]


def is_loopback(address: str) -> bool:
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


def listener_findings(policy: Policy, sockets: tuple[ListeningSocket, ...]) -> list[Finding]:
    findings: list[Finding] = []
    for sock in sockets:
        if _declared(policy, sock):
            continue
        loopback = is_loopback(sock.address)
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
