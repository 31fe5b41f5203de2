"""The perimeter as it is now: the nft ruleset, normalised, and the listening sockets.

`take_snapshot` reads both; `parse_ruleset` turns nft's JSON into tables, chains and rules
whose identities leave out what changes with traffic or time (counters, handles, expiry), so
that two readings of an unchanged firewall compare equal. The comparison is in `findings.py`,
the watcher that acts on it in `drift.py`.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.guard import nft

VIGIE_TABLE = (nft.TABLE_FAMILY, nft.TABLE_NAME)
_VERDICTS = ("accept", "drop", "reject", "queue", "jump", "goto", "return", "continue")
# Values that change with traffic or time, not with configuration: counters, quotas used,
# element expiry, and handles (nft renumbers them when a rule is re-created identically).
_VOLATILE_KEYS = frozenset({"handle", "packets", "bytes", "used", "used_unit", "expires"})
MAX_TEXT = 200
MAX_LISTED = 50


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


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def sole_entry(obj: Any) -> tuple[str, Any] | None:
    if isinstance(obj, dict) and len(obj) == 1:
        ((key, body),) = obj.items()
        return str(key), body
    return None


def value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list):
        return "{ " + ", ".join(value_text(v) for v in value) + " }"
    single = sole_entry(value)
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
                return f"{value_text(body.get('addr'))}/{body.get('len')}"
            if key == "elem":
                return value_text(body.get("val"))
        if key == "concat" and isinstance(body, list):
            return " . ".join(value_text(v) for v in body)
        if key == "range" and isinstance(body, list) and len(body) == 2:
            return f"{value_text(body[0])}-{value_text(body[1])}"
        if key == "set":
            return value_text(body if isinstance(body, list) else [body])
    return canonical(value)


def _statement_text(statement: Any) -> str:
    single = sole_entry(statement)
    if single is None:
        return canonical(statement)
    key, body = single
    if key == "match" and isinstance(body, dict):
        op = body.get("op", "==")
        shown = "" if op in ("==", "in") else f" {op}"
        return f"{value_text(body.get('left'))}{shown} {value_text(body.get('right'))}"
    if key in ("jump", "goto") and isinstance(body, dict):
        return f"{key} {body.get('target', '')}"
    if key == "reject":
        kind = body.get("type") if isinstance(body, dict) else None
        return f"reject with {kind}" if kind else "reject"
    if key == "mangle" and isinstance(body, dict):
        return f"{value_text(body.get('key'))} set {value_text(body.get('value'))}"
    if key == "counter" and (body is None or isinstance(body, dict)):
        return "counter"
    if key in ("snat", "dnat", "redirect", "masquerade") and isinstance(body, dict):
        target = ":".join(
            value_text(body[part]) for part in ("addr", "port") if body.get(part) is not None
        )
        return f"{key} to {target}" if target else key
    if body is None:
        return key
    return f"{key} {value_text(body)}"


def _verdict(expr: list[Any]) -> str:
    verdict = ""
    for statement in expr:
        single = sole_entry(statement)
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
    identity = canonical({"expr": _strip(expr), "comment": comment or ""})
    return Rule(identity=identity, text=text[:MAX_TEXT], verdict=_verdict(expr))


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
            definition["elem"] = sorted(definition["elem"], key=canonical)
    return canonical(definition)


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
        single = sole_entry(item)
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
            definition=canonical(definition),
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
