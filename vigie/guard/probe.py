"""The outside-in probe: what does the internet see of this portal, right now?

Every round, from the policy's vantage point (a command prefix: `ip netns exec outside`,
`ssh probe@vps`...), the fetcher (`vigie.guard.fetch`, standard library only) asks each base
URL, without credentials, for: the login page, a rotating sample of document URLs and
patient pages (decoys drawn like any record, see `_record_paths`), the paths an exposed server would give away (blob store,
keyring, database, .git, static tricks), the static root, admin, API and audit routes, and
robots.txt. The guard then judges each answer:

- document bytes anywhere, or a 200 on anything protected → LEAK: critical alert, audit
  event and, if the policy says so, lockdown (the portal stops serving records);
- refused or timed out → UNREACHABLE: what a closed firewall looks like from outside;
- the login page without noindex/no-store, robots.txt not disallowing, a certificate that
  fails verification or expires within 14 days → WARNING;
- the fetcher itself failing → ERROR rows and an alert; never an exception out of the round.

The fetcher reads at most 64 KiB of each answer and only its flags (format names) reach the
database: a leaked document's content is never copied into probe results or alerts.

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

A round whose only leaks are reachability (a port accepting TCP, the login page answering
in `internal` mode: nothing disclosed) asks again, RECHECK_SECONDS later, whether those
ports still answer from outside before it locks down. A round that starts while somebody
flushes the ruleset sees the port open for the ~0.3 s the guard takes to put its table back
(drift.py); locking the doctors out for what the repair already closed would be wrong, and
hiding it would be worse: the critical alert says the port was reachable then and is closed
now. Still reachable, or nothing could tell → lockdown, as before. A leak that discloses
data (document bytes, a 200 on a protected path) locks down at once, without asking again.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.alerts.services import raise_alert
from vigie.audit.log import AuditUnavailable, record
from vigie.guard import fetch, findings, lockdown, probe_auth, snapshot
from vigie.guard.models import Canary, MaintenanceWindow, ProbeResult
from vigie.guard.policy import INTERNAL, Policy
from vigie.records.models import Document, Patient

logger = logging.getLogger(__name__)

Verdict = ProbeResult.Verdict

# Answers a route refused with: a 200 here means the route served its content to anyone.
PROTECTED = frozenset({"document", "decoy", "patient", "storage", "admin", "api", "audit"})
# Content types that are documents whatever the bytes look like.
DOCUMENT_TYPES = ("application/pdf", "application/dicom", "x-application/hl7", "application/hl7")
TLS_WARN_DAYS = 14
PATIENT_PAGES = 3
# Paths an exposed server would show if it served its data directory, not Vigie.
STORAGE_PATHS = (
    "/blobs/",
    "/var/",
    "/media/",
    "/keyring/keyring.json",
    "/vigie.sqlite3",
    "/.git/config",
    "/.env",
    "/static/../vigie.sqlite3",
    "/static/..%2fkeyring/keyring.json",
)
KEEP_DAYS = 7
KEEP_ROWS = 5000
REQUEST_TIMEOUT = 5.0
ROUND_DEADLINE = 20.0
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
# How long a reachability-only exposure waits before it is checked again from outside: the
# guard's own repair of a flushed table takes ~0.3 s (drift.py); this leaves it ample room
# and stays far inside the probe interval (perimeter forwarding is still caught in ≤ 30 s).
RECHECK_SECONDS = 1.5
# What the login page holds when it is Vigie's own (public mode: "answers as the portal").
LOGIN_MARKER = 'action="{path}"'
# Only what the fetcher may need to start (and ssh to find its keys): never the guard's
# secrets (VIGIE_SECRET_KEY...), which have no business on a vantage point.
_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSH_AUTH_SOCK", "USER", "LOGNAME")


@dataclass(frozen=True)
class ProbeRequest:
    url: str
    category: str
    # The fetcher returns the body's first KiB as text (robots.txt); never for records.
    want_text: bool = False


@dataclass
class Recheck:
    """What the vantage point saw when asked again about the ports a round found reachable."""

    seen_at: datetime  # when the round's fetcher reported them reachable
    checked_at: datetime
    still_open: list[str]  # host:port targets
    closed: list[str]
    error: str = ""  # the fetcher failed: nothing confirms the ports closed

    @property
    def closed_now(self) -> bool:
        return not self.error and not self.still_open


@dataclass
class ProbeRound:
    round_id: str
    results: list[ProbeResult] = field(default_factory=list)
    leaks: list[ProbeResult] = field(default_factory=list)
    warnings: list[ProbeResult] = field(default_factory=list)
    errors: list[ProbeResult] = field(default_factory=list)
    # Leaks that only show the portal reachable (result url → the host:port it answered on);
    # a leak not in here disclosed something.
    reachable: dict[str, str] = field(default_factory=dict)
    recheck: Recheck | None = None
    lockdown_engaged: bool = False

    @property
    def only_reachability(self) -> bool:
        return bool(self.leaks) and all(r.url in self.reachable for r in self.leaks)


class FetchFailed(RuntimeError):
    """The fetcher could not be run or gave no usable answer; the message says why."""


# --- what to ask ------------------------------------------------------------------------


def _random_rows(queryset: Any, count: int, rng: random.Random) -> list[Any]:
    """`count` distinct rows at random offsets (no full scan of a large table)."""
    total = queryset.count()
    if total == 0 or count <= 0:
        return []
    offsets = rng.sample(range(total), min(count, total))
    rows = []
    for offset in offsets:
        rows.extend(queryset.order_by("pk")[offset : offset + 1])
    return rows


def _record_paths(policy: Policy, rng: random.Random) -> list[tuple[str, str]]:
    """Document and patient URLs, chosen afresh each round, decoys drawn like any record.

    The vantage point sees every URL we send it; if it is compromised, its owner must not
    learn which records are decoys (he would avoid them, and the signatures he is handed
    would tell him which URLs are safe to fetch). So the round draws `probe_sample_size`
    documents uniformly from ALL documents and PATIENT_PAGES patients uniformly from ALL
    patients, decoys included, asks each document in the same three forms, and sends the
    URLs sorted (their ids are random, so the order says nothing the set does not).

    What "cannot be told apart" means here: the distribution of everything the vantage point
    is sent, round after round, is the same whichever records are decoys. Permute the decoy
    labels among the records and nothing it sees changes in law, so no test over any number
    of rounds does better than guessing. The price, with few decoys among many documents,
    is that a decoy is probed as rarely as any one document is (probe_sample_size / number
    of documents per round): that is the point, not a loss. Probing the decoys more often
    is the tell issue 17 found; never probing them is a tell too (to someone holding leaked
    links: the ones the probe never asks for). A decoy is only a protected URL like the
    others for the probe: the real documents' refusals already prove what a decoy's would.
    """
    decoy_patient_ids = set(Canary.objects.values_list("patient_id", flat=True))
    documents = _random_rows(Document.objects.all(), policy.probe_sample_size, rng)
    patients = _random_rows(Patient.objects.all(), PATIENT_PAGES, rng)
    paths: list[tuple[str, str]] = []
    for document in documents:
        category = "decoy" if document.patient_id in decoy_patient_ids else "document"
        for name in ("document_content", "document_download", "document_viewer"):
            paths.append((reverse(f"portal:{name}", args=[document.pk]), category))
    for patient in patients:
        category = "decoy" if patient.pk in decoy_patient_ids else "patient"
        paths.append((reverse("portal:patient_detail", args=[patient.public_id]), category))
    return sorted(paths)


def _fixed_paths() -> list[tuple[str, str]]:
    """Paths that need no database: storage, static, admin, API, audit, robots.txt."""
    paths = [(path, "storage") for path in STORAGE_PATHS]
    paths.append(("/" + settings.STATIC_URL.strip("/") + "/", "static"))
    paths.append(("/admin/", "admin"))
    paths.extend((("/api/", "api"), ("/fhir/Patient", "api")))
    paths.append(("/audit/", "audit"))
    paths.append(("/robots.txt", "robots"))
    return paths


def _for_each_base(policy: Policy, paths: list[tuple[str, str]]) -> list[ProbeRequest]:
    requests = []
    for base in policy.probe_base_urls:
        root = base.rstrip("/")
        for path, category in paths:
            requests.append(ProbeRequest(root + path, category, want_text=category == "robots"))
    return requests


def build_requests(policy: Policy, rng: random.Random | None = None) -> list[ProbeRequest]:
    """The round's requests for every base URL; real and decoy ids vary from round to round."""
    # The system's generator: which records a round names must not be predictable from the
    # rounds an observer has already seen.
    rng = rng or random.SystemRandom()
    login = [(reverse(settings.LOGIN_URL), "login")]
    return _for_each_base(policy, login + _record_paths(policy, rng) + _fixed_paths())


# --- running the fetcher on the vantage point ----------------------------------------------


def _fetcher_command(policy: Policy) -> list[str]:
    source = Path(fetch.__file__).read_text(encoding="utf-8")
    if not policy.probe_vantage:
        return [sys.executable, "-I", "-c", source]
    command = ["python3", "-I", "-c", source]
    if Path(policy.probe_vantage[0]).name == "ssh":
        # ssh hands the remote side one shell command line, not an argument vector.
        return [*policy.probe_vantage, shlex.join(command)]
    return [*policy.probe_vantage, *command]


def _run_fetcher(policy: Policy, job: dict[str, Any]) -> dict[str, Any]:
    job = {"timeout": REQUEST_TIMEOUT, "deadline": ROUND_DEADLINE, **job}
    job["ca_file"] = policy.probe_ca_file or None
    env = {name: os.environ[name] for name in _ENV_KEPT if name in os.environ}
    try:
        proc = subprocess.run(  # noqa: S603  (the policy's vantage prefix and our own script)
            _fetcher_command(policy),
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            # The fetcher stops starting requests at its deadline; this bounds the rest
            # (a hung ssh, a vantage that never answers).
            timeout=float(job["deadline"]) + 2 * REQUEST_TIMEOUT + 10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchFailed("the fetcher did not finish in time") from None
    except OSError as exc:
        raise FetchFailed(f"cannot start the fetcher: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise FetchFailed(f"the fetcher failed (exit status {proc.returncode}): {last[:300]}")
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        raise FetchFailed("the fetcher's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise FetchFailed("the fetcher's answer is not a JSON object")
    return answer


# --- judging the answers ------------------------------------------------------------------


def _login_path() -> str:
    return reverse(settings.LOGIN_URL)


def _redirect_is_safe(url: str, location: str) -> bool:
    """A redirect to the login page, or to the same path over HTTPS, shows nothing."""
    target = urlsplit(location)
    if target.path == _login_path():
        return True
    asked = urlsplit(url)
    return target.scheme == "https" and asked.scheme == "http" and target.path == asked.path


def _served(answer: dict[str, Any]) -> str:
    flags = [f for f in answer.get("flags") or [] if f != "directory_listing"]
    content_type = (answer.get("headers") or {}).get("content-type", "")
    what = ", ".join(f"{flag.upper()} bytes" for flag in flags) or content_type or "content"
    return f"{answer.get('status')} {what}".strip()


def judge(
    request: ProbeRequest,
    answer: dict[str, Any],
    *,
    mode: str = INTERNAL,
    window_open: bool = False,
) -> tuple[str, str]:
    """(verdict, detail) for one fetcher answer, under the policy's exposure mode."""
    verdict, detail = _judge_content(request, answer)
    if request.category != "login" or answer.get("status") is None or verdict == Verdict.LEAK:
        return verdict, detail
    if mode == INTERNAL:
        if window_open:
            return Verdict.WARNING, _(
                "the portal answers from outside while a maintenance window is open (%(status)s)"
            ) % {"status": answer.get("status")}
        return Verdict.LEAK, _(
            "the portal answers from outside (%(status)s) but the policy says its exposure "
            "is internal"
        ) % {"status": answer.get("status")}
    if answer.get("status") == 200 and answer.get("expected") is False:
        return Verdict.LEAK, _(
            "something other than the portal's login page answers at the portal's address"
        )
    return verdict, detail


def _judge_content(request: ProbeRequest, answer: dict[str, Any]) -> tuple[str, str]:
    status = answer.get("status")
    headers = answer.get("headers") or {}
    flags = list(answer.get("flags") or [])
    document_flags = [f for f in flags if f != "directory_listing"]
    content_type = str(headers.get("content-type", "")).lower()

    if document_flags:
        return Verdict.LEAK, f"served document bytes ({_served(answer)})"
    if status == 200 and content_type.startswith(DOCUMENT_TYPES):
        return Verdict.LEAK, f"served a document ({_served(answer)})"
    if status is None:
        kind = answer.get("error_kind")
        error = str(answer.get("error") or "no answer")
        if kind in ("refused", "timeout", "reset", "unreachable"):
            return Verdict.UNREACHABLE, error
        if kind == "tls":
            return Verdict.WARNING, f"something answers but TLS fails: {error}"
        return Verdict.ERROR, error
    if request.category in PROTECTED:
        if status == 200:
            return Verdict.LEAK, f"a protected path answered 200 ({_served(answer)})"
        if "directory_listing" in flags:
            return Verdict.LEAK, f"a directory listing ({status})"
        location = str(headers.get("location", ""))
        if 300 <= status < 400 and location and not _redirect_is_safe(request.url, location):
            return Verdict.WARNING, f"redirects to {location[:200]}, not to the login page"
        return Verdict.OK, f"refused ({status})"
    if request.category == "login":
        if status != 200:
            return Verdict.WARNING, f"the login page answered {status}, not 200"
        missing = []
        if "noindex" not in str(headers.get("x-robots-tag", "")).lower():
            missing.append("X-Robots-Tag: noindex")
        if "no-store" not in str(headers.get("cache-control", "")).lower():
            missing.append("Cache-Control: no-store")
        if missing:
            return Verdict.WARNING, "the login page lacks " + " and ".join(missing)
        return Verdict.OK, "login page with noindex and no-store"
    if request.category == "static":
        if status == 200 or "directory_listing" in flags:
            return Verdict.WARNING, f"the static root answers {status}: a directory listing?"
        return Verdict.OK, f"no listing ({status})"
    if request.category == "robots":
        lines = [line.strip().lower() for line in str(answer.get("text", "")).splitlines()]
        if status == 200 and "disallow: /" in lines:
            return Verdict.OK, "robots.txt disallows everything"
        return Verdict.WARNING, f"robots.txt does not disallow crawling ({status})"
    return Verdict.OK, str(status)


def judge_tls(base: str, tls: dict[str, Any]) -> tuple[str, str]:
    days = tls.get("days_left")
    not_after = tls.get("not_after") or "?"
    error = tls.get("verify_error")
    when = f"valid until {not_after}"
    if isinstance(days, int | float):
        whole = int(days)  # whole days, towards zero
        when += f", {whole} days left" if days >= 0 else f", expired {-whole} days ago"
    if error:
        return Verdict.WARNING, f"certificate fails verification: {error} ({when})"
    if isinstance(days, int | float) and days < 0:
        return Verdict.WARNING, f"certificate expired ({when})"
    if isinstance(days, int | float) and days < TLS_WARN_DAYS:
        return Verdict.WARNING, f"certificate expires soon ({when})"
    return Verdict.OK, f"certificate {when}"


# --- the port scan ------------------------------------------------------------------------


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


def _port_base(policy: Policy) -> dict[str, frozenset[int]]:
    """Each base URL's host → the ports outsiders use for the portal there."""
    hosts: dict[str, set[int]] = {}
    for url in policy.probe_base_urls:
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            hosts.setdefault(parts.hostname, set()).add(port)
    return {host: frozenset(ports) for host, ports in hosts.items()}


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _window_ports(policy: Policy, since: datetime, until: datetime) -> frozenset[int]:
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


def _judge_scan(
    outcome: ProbeRound,
    at: datetime,
    facts: PortFacts,
    targets: dict[str, tuple[str, int]],
    states: Any,
) -> None:
    """One row per port that answered, one row per host for the ports that did not."""
    closed: dict[str, list[int]] = {}
    for target, (host, port) in targets.items():
        state = states.get(target) if isinstance(states, dict) else None
        if not isinstance(state, str):
            outcome.results.append(
                _result(
                    outcome.round_id,
                    at,
                    f"tcp://{target}",
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
            outcome.reachable[f"tcp://{target}"] = target
        outcome.results.append(
            _result(outcome.round_id, at, f"tcp://{target}", "port", None, verdict, detail)
        )
    for host, ports in closed.items():
        listed = ", ".join(str(p) for p in sorted(ports))
        outcome.results.append(
            _result(
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


# --- one round ----------------------------------------------------------------------------


def _result(
    round_id: str, at: datetime, url: str, category: str, status: Any, verdict: str, detail: str
) -> ProbeResult:
    return ProbeResult(
        checked_at=at,
        round_id=round_id,
        url=url[:500],
        category=category[:32],
        status=status if isinstance(status, int) else None,
        verdict=verdict,
        detail=detail[:500],
    )


def _prune(now: datetime) -> None:
    probe_auth.prune(now.timestamp())
    ProbeResult.objects.filter(checked_at__lt=now - timedelta(days=KEEP_DAYS)).delete()
    oldest_kept = ProbeResult.objects.order_by("-pk").values_list("pk", flat=True)[
        KEEP_ROWS - 1 : KEEP_ROWS
    ]
    cutoff = list(oldest_kept)
    if cutoff:
        ProbeResult.objects.filter(pk__lt=cutoff[0]).delete()


def run_round(
    policy: Policy, *, now: datetime | None = None, ports: Mapping[int, str] | None = None
) -> ProbeRound:
    """Probe every base URL once from the vantage point; store, judge, alert, lock down.

    `ports`: the ports to try beyond the guarded and the base URLs' ones (port → what this
    host runs there); by default this host's listening ports and the usual ones."""
    at = now or timezone.now()
    started = timezone.now()
    outcome = ProbeRound(round_id=uuid.uuid4().hex)
    if not policy.probe_base_urls:
        return outcome
    try:
        requests = build_requests(policy)
    except DatabaseError as exc:
        # Without the sample, still probe what needs no database: an exposure must be seen.
        logger.warning("probe: cannot read records for the sample: %s", exc)
        requests = _for_each_base(policy, [(_login_path(), "login"), *_fixed_paths()])
    extra = ports_to_scan(policy) if ports is None else dict(ports)
    bases = _port_base(policy)
    targets: dict[str, tuple[str, int]] = {}
    for host, portal_ports in sorted(bases.items()):
        # Sorted together: the vantage point cannot tell a listening port from a usual one.
        for port in sorted(set(extra) | set(policy.public_ports) | portal_ports):
            targets[_target(host, port)] = (host, port)
    if len(targets) > MAX_CONNECTS:
        logger.warning("probe: %s ports to try, only %s this round", len(targets), MAX_CONNECTS)
        targets = dict(list(targets.items())[:MAX_CONNECTS])
    login_marker = LOGIN_MARKER.format(path=_login_path())
    job = {
        "connect": list(targets),
        "connect_timeout": CONNECT_TIMEOUT,
        "requests": [
            {
                "url": r.url,
                "headers": {probe_auth.HEADER: probe_auth.sign("GET", probe_auth.target_of(r.url))},
                "want_text": r.want_text,
                **({"expect": login_marker} if r.category == "login" else {}),
            }
            for r in requests
        ],
    }
    try:
        reply = _run_fetcher(policy, job)
        answers = reply.get("results")
        answer_connect = reply.get("connect")
        if not isinstance(answers, list) or len(answers) != len(requests):
            raise FetchFailed("the fetcher's answer does not match the requests")
    except FetchFailed as exc:
        outcome.results = [
            _result(outcome.round_id, at, r.url, r.category, None, Verdict.ERROR, str(exc))
            for r in requests
        ]
        outcome.errors = list(outcome.results)
    else:
        windows = _window_ports(policy, started, timezone.now())
        facts = PortFacts(
            mode=policy.exposure_mode,
            guarded=frozenset(policy.public_ports),
            portal=frozenset().union(*bases.values()),
            outside=policy.outside_ports,
            listening={port: what for port, what in extra.items() if what},
            windows=windows,
        )
        tls_seen: dict[str, dict[str, Any]] = {}
        for request, answer in zip(requests, answers, strict=True):
            answer = answer if isinstance(answer, dict) else {}
            verdict, detail = judge(
                request, answer, mode=policy.exposure_mode, window_open=bool(windows)
            )
            if verdict == Verdict.LEAK and _only_reachable(request, answer, policy.exposure_mode):
                outcome.reachable[request.url] = _request_target(request.url)
            outcome.results.append(
                _result(
                    outcome.round_id,
                    at,
                    request.url,
                    request.category,
                    answer.get("status"),
                    verdict,
                    detail,
                )
            )
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(request.url))
            if isinstance(answer.get("tls"), dict) and origin not in tls_seen:
                tls_seen[origin] = answer["tls"]
        for origin, tls in tls_seen.items():
            verdict, detail = judge_tls(origin, tls)
            outcome.results.append(
                _result(outcome.round_id, at, origin, "tls", None, verdict, detail)
            )
        _judge_scan(outcome, at, facts, targets, answer_connect)
        for result in outcome.results:
            bucket = {
                Verdict.LEAK: outcome.leaks,
                Verdict.WARNING: outcome.warnings,
                Verdict.ERROR: outcome.errors,
            }.get(Verdict(result.verdict))
            if bucket is not None:
                bucket.append(result)
        if outcome.only_reachability:
            outcome.recheck = recheck(policy, outcome, seen_at=timezone.now())

    try:
        ProbeResult.objects.bulk_create(outcome.results)
        _prune(timezone.now())
    except DatabaseError:
        logger.exception("probe: cannot store the round's results")
    _react(policy, outcome)
    return outcome


def _only_reachable(request: ProbeRequest, answer: dict[str, Any], mode: str) -> bool:
    """The login page answering in internal mode: an exposure by where it answers, not by
    what it shows (its content judged on its own is no leak)."""
    return (
        request.category == "login"
        and mode == INTERNAL
        and _judge_content(request, answer)[0] != Verdict.LEAK
    )


def _request_target(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _target(parts.hostname or "", port)


def recheck(policy: Policy, outcome: ProbeRound, *, seen_at: datetime) -> Recheck:
    """Ask the vantage point again, RECHECK_SECONDS later, whether the ports this round
    found reachable still accept connections (the guard may have repaired its table)."""
    targets = sorted(set(outcome.reachable.values()))
    time.sleep(RECHECK_SECONDS)
    job = {"requests": [], "connect": targets, "connect_timeout": CONNECT_TIMEOUT}
    try:
        states = _run_fetcher(policy, job).get("connect")
        if not isinstance(states, dict) or set(states) != set(targets):
            raise FetchFailed("the fetcher's answer does not match the ports asked")
    except FetchFailed as exc:
        logger.warning("probe: cannot check again from outside: %s", exc)
        return Recheck(seen_at, timezone.now(), still_open=[], closed=[], error=str(exc))
    still_open = [t for t in targets if states[t] == "open"]
    closed = [t for t in targets if states[t] != "open"]
    return Recheck(seen_at, timezone.now(), still_open=still_open, closed=closed)


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


def _react(policy: Policy, outcome: ProbeRound) -> None:
    """Alerts, audit and lockdown for a round; each step runs even if another fails."""
    if outcome.leaks:
        origins = sorted({"{0.scheme}://{0.netloc}".format(urlsplit(r.url)) for r in outcome.leaks})
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
        # Reachable a moment ago and closed now (the guard repaired its table): recorded,
        # not answered by cutting the doctors off.
        closed_again = checked is not None and checked.closed_now
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
    if outcome.warnings:
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
    if outcome.errors:
        raise_alert(
            "guard.probe.failed",
            severity="warning",
            summary=f"The outside-in probe could not run: {outcome.errors[0].detail}",
            details={"round_id": outcome.round_id, "count": len(outcome.errors)},
            dedupe_key="guard.probe.failed",
        )


# --- after a maintenance window -----------------------------------------------------------


def port_closed_from_outside(policy: Policy, port: int) -> bool | None:
    """From the vantage point: True if no base URL's host accepts a TCP connection on `port`,
    False if one does, None if it cannot tell (no base URLs, or the fetcher failed)."""
    hosts = sorted({urlsplit(url).hostname or "" for url in policy.probe_base_urls} - {""})
    if not hosts:
        return None
    targets = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host in hosts]
    try:
        states = _run_fetcher(policy, {"requests": [], "connect": targets}).get("connect")
    except FetchFailed as exc:
        logger.warning("probe: cannot check port %s from outside: %s", port, exc)
        return None
    if not isinstance(states, dict) or set(states) != set(targets):
        return None
    return not any(state == "open" for state in states.values())
