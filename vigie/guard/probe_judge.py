"""Judging what the vantage point was answered: one verdict per request, one per certificate.

- document bytes anywhere, or a 200 on anything protected → LEAK;
- refused or timed out → UNREACHABLE: what a closed firewall looks like from outside;
- the login page without noindex/no-store, robots.txt not disallowing, a certificate that
  fails verification or expires within 14 days → WARNING;
- in `internal` exposure mode the login page answering at all is a LEAK (WARNING while a
  maintenance window is open); in `public` mode, only when it is not the portal's own.

Only the fetcher's flags (format names) reach the rows: a leaked document's content is never
copied into probe results or alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from vigie.guard.policy import INTERNAL
from vigie.guard.probe_outcome import ProbeRound, Verdict, result_row
from vigie.guard.probe_ports import request_target
from vigie.guard.probe_requests import ProbeRequest, login_path

# Answers a route refused with: a 200 here means the route served its content to anyone.
PROTECTED = frozenset({"document", "decoy", "patient", "storage", "admin", "api", "audit"})
# Content types that are documents whatever the bytes look like.
DOCUMENT_TYPES = ("application/pdf", "application/dicom", "x-application/hl7", "application/hl7")
TLS_WARN_DAYS = 14


def _redirect_is_safe(url: str, location: str) -> bool:
    """A redirect to the login page, or to the same path over HTTPS, shows nothing."""
    target = urlsplit(location)
    if target.path == login_path():
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


def _only_reachable(request: ProbeRequest, answer: dict[str, Any], mode: str) -> bool:
    """The login page answering in internal mode: an exposure by where it answers, not by
    what it shows (its content judged on its own is no leak)."""
    return (
        request.category == "login"
        and mode == INTERNAL
        and _judge_content(request, answer)[0] != Verdict.LEAK
    )


def judge_answers(
    outcome: ProbeRound,
    at: datetime,
    requests: Sequence[ProbeRequest],
    answers: Sequence[Any],
    *,
    mode: str,
    window_open: bool,
) -> None:
    """A row per request, then a row per origin's certificate (the first answer that had one)."""
    tls_seen: dict[str, dict[str, Any]] = {}
    for request, answer in zip(requests, answers, strict=True):
        answer = answer if isinstance(answer, dict) else {}
        verdict, detail = judge(request, answer, mode=mode, window_open=window_open)
        if verdict == Verdict.LEAK and _only_reachable(request, answer, mode):
            outcome.reachable[request.url] = request_target(request.url)
        outcome.results.append(
            result_row(
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
            result_row(outcome.round_id, at, origin, "tls", None, verdict, detail)
        )
