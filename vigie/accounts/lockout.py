"""Lockout: every password or code is counted *before* it is checked.

Three counters (rows of `LoginThrottle`):

- per source address, every password and code: a hard limit per cool-off window
  (VIGIE_LOCKOUT_FAILURES per VIGIE_LOCKOUT_MINUTES), against spraying from one address;
- per account, passwords: a progressive delay (a few free attempts, then 5 s doubling up to
  VIGIE_LOGIN_DELAY_MAX_SECONDS) and an alert when attempts go on. Not a hard lock: anyone
  can type a doctor's identifier, and a lock would let any outsider keep the doctor out;
- per account, second-factor codes: a hard limit per window (only a password holder gets
  there, and six digits must not be guessable).

Why not django-axes, which did this before: it checks the lock, lets the password be verified,
and only then records the failure, so concurrent requests all pass the check (40 concurrent
wrong codes had 19 verified against a limit of 5), and it has no hook to count first. Here an
attempt is *reserved* with one conditional UPDATE (serialised by the database on SQLite and
PostgreSQL alike) and only a request that won its reservation is verified; a success gives
its reservation back, since it was not a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from vigie.accounts.models import LoginThrottle, User

Scope = LoginThrottle.Scope

# Alert kinds and audit tags of this module (events.py holds the views' tags).
SUSTAINED_ALERT = "system.login.sustained_failures"


def now() -> datetime:
    # One place to read the clock, so tests can move it instead of sleeping.
    return timezone.now()


@dataclass(frozen=True)
class Schedule:
    """When the next attempt may come, given how many were made in the current window.

    `waits[n - 1]` is the pause required after the n-th attempt (the last value repeats).
    The count is forgotten after `quiet` without attempts, or `span` after the window began.
    """

    waits: tuple[timedelta, ...]
    quiet: timedelta
    span: timedelta | None = None

    def wait_after(self, attempts: int) -> timedelta:
        if attempts <= 0:
            return timedelta(0)
        return self.waits[min(attempts, len(self.waits)) - 1]

    def expired(self, at: datetime) -> Q:
        q = Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lte=at - self.quiet)
        if self.span is not None:
            q |= Q(window_started_at__lte=at - self.span)
        return q

    def may_try(self, at: datetime) -> Q:
        """Rows on which one more attempt is allowed at `at` (a WHERE clause, no read)."""
        q = self.expired(at) | Q(attempts=0)
        last = len(self.waits)
        for n in range(1, last):
            wait = self.waits[n - 1]
            q |= Q(attempts=n) if not wait else Q(attempts=n, last_attempt_at__lte=at - wait)
        return q | Q(attempts__gte=last, last_attempt_at__lte=at - self.waits[-1])

    def next_allowed(self, row: LoginThrottle) -> datetime | None:
        if row.last_attempt_at is None:
            return None
        candidates = [
            row.last_attempt_at + self.wait_after(row.attempts),
            row.last_attempt_at + self.quiet,
        ]
        if self.span is not None:
            candidates.append(row.window_started_at + self.span)
        return min(candidates)


def hard_limit(limit: int, cool_off: timedelta) -> Schedule:
    # `limit` attempts per window, then nothing until the window (fixed from its first
    # attempt, so a success now and then never keeps old failures alive) is over.
    return Schedule(
        waits=(timedelta(0),) * (limit - 1) + (cool_off,), quiet=cool_off, span=cool_off
    )


def progressive_delay(free: int, first: timedelta, cap: timedelta, quiet: timedelta) -> Schedule:
    # `free` attempts back to back (a few typos never wait), then `first`, doubling to `cap`.
    waits: list[timedelta] = [timedelta(0)] * (free - 1)
    wait = first
    while wait < cap:
        waits.append(wait)
        wait *= 2
    waits.append(cap)
    return Schedule(waits=tuple(waits), quiet=quiet)


def _cool_off() -> timedelta:
    return timedelta(minutes=settings.VIGIE_LOCKOUT_MINUTES)


def schedule_for(scope: str) -> Schedule:
    if scope == Scope.ACCOUNT:
        return progressive_delay(
            settings.VIGIE_LOGIN_DELAY_FREE_ATTEMPTS,
            timedelta(seconds=settings.VIGIE_LOGIN_DELAY_FIRST_SECONDS),
            timedelta(seconds=settings.VIGIE_LOGIN_DELAY_MAX_SECONDS),
            quiet=_cool_off(),
        )
    return hard_limit(settings.VIGIE_LOCKOUT_FAILURES, _cool_off())


class Refused(Exception):
    """No attempt reserved: the request must be refused without checking anything."""

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(scope, retry_after)
        self.scope = scope
        self.retry_after = retry_after

    @property
    def delayed(self) -> bool:
        """True for the account's delay (wait and retry), False for a hard lock."""
        return self.scope == Scope.ACCOUNT


@dataclass
class Reservation:
    """Attempts reserved for one verification; give them back if it succeeds."""

    counters: Sequence[tuple[str, str]]
    at: datetime
    attempts: int = 0  # on the account's password counter, after this reservation

    def succeeded(self) -> None:
        """The password or code was right: it was not a guess, so it does not count.

        Only in the window it was counted in: a window started after the reservation owes
        nothing, or a well-timed success could buy a guess in the next window.
        """
        for scope, key in self.counters:
            LoginThrottle.objects.filter(
                scope=scope, key=key, attempts__gt=0, window_started_at__lte=self.at
            ).update(attempts=F("attempts") - 1)


def _reserve_one(scope: str, key: str, at: datetime) -> bool:
    schedule = schedule_for(scope)
    rows = LoginThrottle.objects.filter(scope=scope, key=key)
    if not rows.exists():
        # ON CONFLICT DO NOTHING: two first attempts racing create one row, neither fails.
        LoginThrottle.objects.bulk_create(
            [LoginThrottle(scope=scope, key=key, window_started_at=at)], ignore_conflicts=True
        )
    expired = schedule.expired(at)
    # One statement decides and counts: the database serialises concurrent UPDATEs of the
    # row and re-checks the WHERE clause on the row as the previous one left it, so no two
    # requests can both take the last attempt of a window.
    claimed = rows.filter(schedule.may_try(at)).update(
        attempts=Case(When(expired, then=Value(1)), default=F("attempts") + 1),
        window_started_at=Case(When(expired, then=Value(at)), default=F("window_started_at")),
        last_attempt_at=at,
    )
    return bool(claimed)


def _retry_after(scope: str, key: str, at: datetime) -> int:
    row = LoginThrottle.objects.filter(scope=scope, key=key).first()
    allowed = schedule_for(scope).next_allowed(row) if row is not None else None
    if allowed is None:
        return 1
    return max(1, math.ceil((allowed - at).total_seconds()))


def reserve(counters: Sequence[tuple[str, str]]) -> Reservation:
    """Reserve one attempt on each counter, or none at all (raises Refused)."""
    at = now()
    with transaction.atomic():
        for scope, key in counters:
            if not _reserve_one(scope, key, at):
                refusal = Refused(scope, _retry_after(scope, key, at))
                # Leaving the block by an exception rolls back the counters already taken:
                # a refused request is not an attempt anywhere.
                raise refusal
    return Reservation(counters=counters, at=at)


def _address_counter(address: str | None) -> list[tuple[str, str]]:
    # No address (a command-line check): the account's counter alone applies.
    return [(Scope.ADDRESS, address)] if address else []


def reserve_password(username: str, address: str | None) -> Reservation:
    """Before checking a password (or an invitation code) for `username` from `address`."""
    key = User.normalize_username(username)
    reservation = reserve([*_address_counter(address), (Scope.ACCOUNT, key)])
    row = LoginThrottle.objects.filter(scope=Scope.ACCOUNT, key=key).first()
    reservation.attempts = row.attempts if row is not None else 0
    return reservation


def reserve_code(user: User, address: str | None) -> Reservation:
    """Before checking a second-factor code (TOTP or recovery) of `user` from `address`."""
    return reserve([*_address_counter(address), (Scope.SECOND_FACTOR, user.get_username())])


def forget_account(username: str) -> None:
    """Both factors proved: the account's earlier attempts are forgiven (not the address's,
    which may have been against other accounts)."""
    LoginThrottle.objects.filter(
        scope__in=[Scope.ACCOUNT, Scope.SECOND_FACTOR], key=User.normalize_username(username)
    ).update(attempts=0, last_attempt_at=None)


def forget_all() -> int:
    """Every counter, accounts and addresses alike (`vigie lockout reset`)."""
    deleted, _ = LoginThrottle.objects.all().delete()
    return deleted


def sustained(reservation: Reservation) -> bool:
    """True once the account's password attempts in this window reach the alert level."""
    return reservation.attempts >= settings.VIGIE_LOGIN_ALERT_ATTEMPTS


def client_ip(request: HttpRequest | None) -> str | None:
    # The direct peer (or the client named by a trusted proxy, see lib/proxy.py).
    # Forwarded-for headers from anyone else could be forged to dodge the address limit.
    if request is None:
        return None
    value = request.META.get("REMOTE_ADDR")
    return value if isinstance(value, str) and value else None


def locked_page(request: HttpRequest, retry_after: int | None = None) -> HttpResponse:
    """The same page and status whether or not the identifier exists (no account probing)."""
    minutes = int(_cool_off().total_seconds() // 60)
    response = render(request, "accounts/locked.html", {"minutes": minutes}, status=429)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def note_password_attempt(reservation: Reservation, username: str, request: HttpRequest) -> None:
    """Alert (IT) and audit once the account's password attempts go on: the delay slows a
    guesser down, people must still learn that someone is trying."""
    if not sustained(reservation):
        return
    from vigie.accounts import events
    from vigie.alerts.services import raise_alert

    key = User.normalize_username(username)
    details = {"username": key, "attempts": reservation.attempts, "address": client_ip(request)}
    # One alert per account, folded: its count grows while the attempts go on.
    raise_alert(
        SUSTAINED_ALERT,
        severity="warning",
        summary=f"Sustained failed logins on the identifier {key}",
        details=details,
        dedupe_key=f"{SUSTAINED_ALERT}:{key}",
    )
    if reservation.attempts == settings.VIGIE_LOGIN_ALERT_ATTEMPTS:
        events.audit(events.LOGIN_SUSTAINED, request=request, outcome="denied", extra=details)
