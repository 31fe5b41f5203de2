"""The outside-in probe: what does the internet see of this portal, right now?

Every round, from the policy's vantage point (a command prefix: `ip netns exec outside`,
`ssh probe@vps`...), the fetcher asks each base URL, without credentials, for what
probe_requests lists, and tries a TCP connect to the ports probe_ports lists. The guard then
judges each answer (probe_judge, probe_ports):

- document bytes anywhere, or a 200 on anything protected → LEAK: critical alert, audit
  event and, if the policy says so, lockdown (the portal stops serving records);
- refused or timed out → UNREACHABLE: what a closed firewall looks like from outside;
- the login page without noindex/no-store, robots.txt not disallowing, a certificate that
  fails verification or expires within 14 days → WARNING;
- the fetcher itself failing → ERROR rows and an alert; never an exception out of the round.

The fetcher reads at most 64 KiB of each answer and only its flags (format names) reach the
database: a leaked document's content is never copied into probe results or alerts.

A round whose only leaks are reachability asks again before it locks down (probe_recheck);
probe_react acts on the outcome. This module runs the round and keeps its rows.

The parts, one job each:
  probe_requests  what to ask (the sample of records, decoys drawn like any record)
  probe_vantage   running the fetcher on the vantage point
  probe_judge     one verdict per answer and per certificate
  probe_ports     the port scan: which ports to try, what an open one means
  probe_recheck   asking again about ports (within a round; after a maintenance window)
  probe_react     alerts, audit and lockdown
  probe_outcome   the round's rows, shared by the above
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from vigie.guard import probe_auth, probe_ports, probe_recheck, probe_vantage
from vigie.guard.models import ProbeResult
from vigie.guard.policy import Policy
from vigie.guard.probe_judge import judge_answers
from vigie.guard.probe_outcome import ProbeRound, Verdict, result_row
from vigie.guard.probe_react import react
from vigie.guard.probe_requests import (
    ProbeRequest,
    build_requests,
    fixed_paths,
    for_each_base,
    login_path,
)
from vigie.guard.probe_vantage import FetchFailed

logger = logging.getLogger(__name__)

KEEP_DAYS = 7
KEEP_ROWS = 5000
# What the login page holds when it is Vigie's own (public mode: "answers as the portal").
LOGIN_MARKER = 'action="{path}"'


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
    requests = _requests(policy)
    extra = probe_ports.ports_to_scan(policy) if ports is None else dict(ports)
    bases = probe_ports.portal_ports_by_host(policy)
    targets = probe_ports.connect_targets(policy, bases, extra)
    try:
        answers, states = _fetch(policy, _job(requests, targets), requests)
    except FetchFailed as exc:
        outcome.results = [
            result_row(outcome.round_id, at, r.url, r.category, None, Verdict.ERROR, str(exc))
            for r in requests
        ]
        outcome.errors = list(outcome.results)
    else:
        windows = probe_ports.window_ports(policy, started, timezone.now())
        judge_answers(
            outcome,
            at,
            requests,
            answers,
            mode=policy.exposure_mode,
            window_open=bool(windows),
        )
        facts = probe_ports.port_facts(policy, bases, extra, windows)
        probe_ports.judge_scan(outcome, at, facts, targets, states)
        outcome.sort_by_verdict()
        if outcome.only_reachability:
            outcome.recheck = probe_recheck.recheck(policy, outcome, seen_at=timezone.now())
    _store(outcome)
    react(policy, outcome)
    return outcome


def _requests(policy: Policy) -> list[ProbeRequest]:
    try:
        return build_requests(policy)
    except DatabaseError as exc:
        # Without the sample, still probe what needs no database: an exposure must be seen.
        logger.warning("probe: cannot read records for the sample: %s", exc)
        return for_each_base(policy, [(login_path(), "login"), *fixed_paths()])


def _job(requests: list[ProbeRequest], targets: Mapping[str, Any]) -> dict[str, Any]:
    """The fetcher's job: every request signed for exactly itself, then the connects."""
    login_marker = LOGIN_MARKER.format(path=login_path())
    return {
        "connect": list(targets),
        "connect_timeout": probe_ports.CONNECT_TIMEOUT,
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


def _fetch(
    policy: Policy, job: dict[str, Any], requests: list[ProbeRequest]
) -> tuple[list[Any], Any]:
    """(one answer per request, the connects' states) from the vantage point."""
    reply = probe_vantage.run_fetcher(policy, job)
    answers = reply.get("results")
    states = reply.get("connect")
    if not isinstance(answers, list) or len(answers) != len(requests):
        raise FetchFailed("the fetcher's answer does not match the requests")
    return answers, states


def _store(outcome: ProbeRound) -> None:
    try:
        ProbeResult.objects.bulk_create(outcome.results)
        _prune(timezone.now())
    except DatabaseError:
        logger.exception("probe: cannot store the round's results")


def _prune(now: datetime) -> None:
    probe_auth.prune(now.timestamp())
    ProbeResult.objects.filter(checked_at__lt=now - timedelta(days=KEEP_DAYS)).delete()
    oldest_kept = ProbeResult.objects.order_by("-pk").values_list("pk", flat=True)[
        KEEP_ROWS - 1 : KEEP_ROWS
    ]
    cutoff = list(oldest_kept)
    if cutoff:
        ProbeResult.objects.filter(pk__lt=cutoff[0]).delete()
