"""The outside-in probe: what does the internet see of this portal, right now?

Every round, from the policy's vantage point (a command prefix: `ip netns exec outside`,
`ssh probe@vps`...), the fetcher (`vigie.guard.fetch`, standard library only) asks each base
URL, without credentials, for: the login page, a rotating sample of real document URLs, the
decoys' URLs, a few patient pages, the paths an exposed server would give away (blob store,
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
"""

from __future__ import annotations

import json
import logging
import os
import random
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone

from vigie.alerts.services import raise_alert
from vigie.audit.log import AuditUnavailable, record
from vigie.guard import fetch, lockdown, probe_auth
from vigie.guard.models import Canary, ProbeResult
from vigie.guard.policy import Policy
from vigie.records.models import Document, Patient

logger = logging.getLogger(__name__)

Verdict = ProbeResult.Verdict

# Answers a route refused with: a 200 here means the route served its content to anyone.
PROTECTED = frozenset({"document", "decoy", "patient", "storage", "admin", "api", "audit"})
# Content types that are documents whatever the bytes look like.
DOCUMENT_TYPES = ("application/pdf", "application/dicom", "x-application/hl7", "application/hl7")
TLS_WARN_DAYS = 14
PATIENT_PAGES = 3
MAX_DECOYS = 4
DECOY_DOCUMENTS = 2
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
class ProbeRound:
    round_id: str
    results: list[ProbeResult] = field(default_factory=list)
    leaks: list[ProbeResult] = field(default_factory=list)
    warnings: list[ProbeResult] = field(default_factory=list)
    errors: list[ProbeResult] = field(default_factory=list)
    lockdown_engaged: bool = False


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
    """Real document and patient URLs, and the decoys', chosen afresh each round."""
    decoy_patient_ids = list(Canary.objects.values_list("patient_id", flat=True))
    documents = _random_rows(
        Document.objects.exclude(patient_id__in=decoy_patient_ids),
        policy.probe_sample_size,
        rng,
    )
    patients = _random_rows(Patient.objects.exclude(pk__in=decoy_patient_ids), PATIENT_PAGES, rng)
    canaries = _random_rows(Canary.objects.select_related("patient"), MAX_DECOYS, rng)
    paths: list[tuple[str, str]] = []
    for document in documents:
        for name in ("document_content", "document_download", "document_viewer"):
            paths.append((reverse(f"portal:{name}", args=[document.pk]), "document"))
    for canary in canaries:
        patient = canary.patient
        paths.append((reverse("portal:patient_detail", args=[patient.public_id]), "decoy"))
        decoy_documents = Document.objects.filter(patient=patient)
        for document in _random_rows(decoy_documents, DECOY_DOCUMENTS, rng):
            paths.append((reverse("portal:document_content", args=[document.pk]), "decoy"))
    for patient in patients:
        paths.append((reverse("portal:patient_detail", args=[patient.public_id]), "patient"))
    return paths


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
    rng = rng or random.Random()  # noqa: S311  (sampling, not secrecy)
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


def judge(request: ProbeRequest, answer: dict[str, Any]) -> tuple[str, str]:
    """(verdict, detail) for one fetcher answer."""
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
    ProbeResult.objects.filter(checked_at__lt=now - timedelta(days=KEEP_DAYS)).delete()
    oldest_kept = ProbeResult.objects.order_by("-pk").values_list("pk", flat=True)[
        KEEP_ROWS - 1 : KEEP_ROWS
    ]
    cutoff = list(oldest_kept)
    if cutoff:
        ProbeResult.objects.filter(pk__lt=cutoff[0]).delete()


def run_round(policy: Policy, *, now: datetime | None = None) -> ProbeRound:
    """Probe every base URL once from the vantage point; store, judge, alert, lock down."""
    at = now or timezone.now()
    outcome = ProbeRound(round_id=uuid.uuid4().hex)
    if not policy.probe_base_urls:
        return outcome
    try:
        requests = build_requests(policy)
    except DatabaseError as exc:
        # Without the sample, still probe what needs no database: an exposure must be seen.
        logger.warning("probe: cannot read records for the sample: %s", exc)
        requests = _for_each_base(policy, [(_login_path(), "login"), *_fixed_paths()])
    job = {
        "requests": [
            {
                "url": r.url,
                "headers": {probe_auth.HEADER: probe_auth.sign(urlsplit(r.url).path)},
                "want_text": r.want_text,
            }
            for r in requests
        ]
    }
    try:
        answers = _run_fetcher(policy, job).get("results")
        if not isinstance(answers, list) or len(answers) != len(requests):
            raise FetchFailed("the fetcher's answer does not match the requests")
    except FetchFailed as exc:
        outcome.results = [
            _result(outcome.round_id, at, r.url, r.category, None, Verdict.ERROR, str(exc))
            for r in requests
        ]
        outcome.errors = list(outcome.results)
    else:
        tls_seen: dict[str, dict[str, Any]] = {}
        for request, answer in zip(requests, answers, strict=True):
            answer = answer if isinstance(answer, dict) else {}
            verdict, detail = judge(request, answer)
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
        for result in outcome.results:
            bucket = {
                Verdict.LEAK: outcome.leaks,
                Verdict.WARNING: outcome.warnings,
                Verdict.ERROR: outcome.errors,
            }.get(Verdict(result.verdict))
            if bucket is not None:
                bucket.append(result)

    try:
        ProbeResult.objects.bulk_create(outcome.results)
        _prune(timezone.now())
    except DatabaseError:
        logger.exception("probe: cannot store the round's results")
    _react(policy, outcome)
    return outcome


def _listing(results: list[ProbeResult], limit: int = 5) -> str:
    shown = "; ".join(f"{r.url} → {r.detail}" for r in results[:limit])
    more = len(results) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


def _react(policy: Policy, outcome: ProbeRound) -> None:
    """Alerts, audit and lockdown for a round; each step runs even if another fails."""
    if outcome.leaks:
        origins = sorted({"{0.scheme}://{0.netloc}".format(urlsplit(r.url)) for r in outcome.leaks})
        summary = f"Exposure seen from outside: {_listing(outcome.leaks)}"
        details = {
            "round_id": outcome.round_id,
            "leaks": [
                {"url": r.url, "category": r.category, "status": r.status, "served": r.detail}
                for r in outcome.leaks[:50]
            ],
            "leak_count": len(outcome.leaks),
        }
        if policy.lockdown_on_exposure:
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
