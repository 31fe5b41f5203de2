"""What the exposure guard knows: maintenance windows, drift events, probe results, decoys,
and one row of shared state (lockdown and the guard's heartbeat).

The kernel, not these rows, decides whether a window is open: a window's element in the
nftables set carries its own timeout. The rows are the record (who, why, from where, until
when, how it ended) and what the guard reconciles the kernel against.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import ClassVar

from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def this_host() -> str:
    """The host a guard row comes from: each node has its own firewall and its own guard."""
    return socket.gethostname()[:200]


class WindowQuerySet(QuerySet["MaintenanceWindow"]):
    def open(self) -> WindowQuerySet:
        """Windows not closed and not past their end (the kernel closes those by itself)."""
        return self.filter(closed_at__isnull=True, ends_at__gt=timezone.now())

    def unreconciled(self) -> WindowQuerySet:
        """Windows past their end that the guard has not yet marked closed."""
        return self.filter(closed_at__isnull=True, ends_at__lte=timezone.now())


class CloseReason(models.TextChoices):
    EXPIRED = "expired", _("Expired")
    CLOSED = "closed", _("Closed by hand")
    VANISHED = "vanished", _("Removed from the firewall by someone else")


class MaintenanceWindow(models.Model):
    who = models.CharField(_("who"), max_length=150)
    reason = models.CharField(_("reason"), max_length=500)
    source = models.GenericIPAddressField(_("source address"))
    port = models.PositiveIntegerField(_("port"))
    opened_at = models.DateTimeField(_("opened at"), default=timezone.now)
    ends_at = models.DateTimeField(_("ends at"))
    extended_by = models.CharField(_("last extended by"), max_length=150, blank=True)
    extensions = models.PositiveIntegerField(_("extensions"), default=0)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    close_reason = models.CharField(
        _("how it ended"), max_length=16, choices=CloseReason.choices, blank=True
    )
    # After the end: did the outside-in check find the port closed again? None = not checked.
    verified_closed = models.BooleanField(_("verified closed from outside"), null=True)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)

    objects = WindowQuerySet.as_manager()

    class Meta:
        verbose_name = _("maintenance window")
        verbose_name_plural = _("maintenance windows")
        ordering: ClassVar[list[str]] = ["-opened_at"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("opened_at")), name="window_ends_after_it_opens"
            ),
            models.CheckConstraint(
                condition=Q(port__gte=1, port__lte=65535), name="window_port_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} → :{self.port} until {self.ends_at:%Y-%m-%d %H:%M:%S} ({self.who})"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None and self.ends_at > timezone.now()

    @property
    def remaining(self) -> timedelta:
        return max(self.ends_at - timezone.now(), timedelta(0))


class DriftEvent(models.Model):
    """One difference between what the policy (plus open windows) allows and what is."""

    class Kind(models.TextChoices):
        RULESET = "ruleset", _("Firewall rules")
        WINDOW_SET = "window_set", _("Maintenance window set")
        LISTENER = "listener", _("Listening socket")
        PERSISTED = "persisted", _("Change made during a window, still there after it")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    summary = models.CharField(_("summary"), max_length=500)
    details = models.JSONField(_("details"), default=dict, blank=True)
    detected_at = models.DateTimeField(_("detected at"), default=timezone.now, db_index=True)
    # A change during an open window is recorded, not alarmed (the window is why it happened).
    during_window = models.BooleanField(_("during a maintenance window"), default=False)
    alerted = models.BooleanField(_("alert raised"), default=False)
    host = models.CharField(_("host"), max_length=200, default=this_host, blank=True)

    class Meta:
        verbose_name = _("drift event")
        verbose_name_plural = _("drift events")
        ordering: ClassVar[list[str]] = ["-detected_at"]

    def __str__(self) -> str:
        return self.summary


class ProbeResult(models.Model):
    """One outside-in fetch: what was asked, what came back, whether that is a leak."""

    class Verdict(models.TextChoices):
        OK = "ok", _("As expected")
        UNREACHABLE = "unreachable", _("Not reachable (expected from outside)")
        LEAK = "leak", _("Exposure")
        WARNING = "warning", _("Warning")
        ERROR = "error", _("Probe failed")

    checked_at = models.DateTimeField(_("checked at"), default=timezone.now, db_index=True)
    round_id = models.CharField(_("round"), max_length=32)
    url = models.CharField(_("URL"), max_length=500)
    category = models.CharField(_("category"), max_length=32)
    status = models.IntegerField(_("HTTP status"), null=True, blank=True)
    verdict = models.CharField(_("verdict"), max_length=16, choices=Verdict.choices)
    detail = models.CharField(_("detail"), max_length=500, blank=True)
    host = models.CharField(_("host"), max_length=200, default=this_host, blank=True)

    class Meta:
        verbose_name = _("probe result")
        verbose_name_plural = _("probe results")
        ordering: ClassVar[list[str]] = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.url}: {self.verdict}"


class Canary(models.Model):
    """A decoy patient (and its documents): in nobody's scope, so any touch is an intrusion."""

    patient = models.OneToOneField(
        "records.Patient", on_delete=models.PROTECT, related_name="+", verbose_name=_("patient")
    )
    label = models.CharField(_("label"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_touched_at = models.DateTimeField(_("last touched at"), null=True, blank=True)
    touches = models.PositiveIntegerField(_("touches"), default=0)

    class Meta:
        verbose_name = _("decoy")
        verbose_name_plural = _("decoys")

    def __str__(self) -> str:
        return self.label or f"decoy {self.pk}"


class GuardState(models.Model):
    """The one row both the guard and the portal read: lockdown and the guard's heartbeat."""

    SINGLETON = 1

    lockdown = models.BooleanField(_("lockdown"), default=False)
    lockdown_reason = models.CharField(_("lockdown reason"), max_length=500, blank=True)
    lockdown_since = models.DateTimeField(_("lockdown since"), null=True, blank=True)
    lockdown_cleared_by = models.CharField(_("lockdown cleared by"), max_length=150, blank=True)
    lockdown_cleared_at = models.DateTimeField(_("lockdown cleared at"), null=True, blank=True)
    last_heartbeat = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    guard_pid = models.IntegerField(_("guard process id"), null=True, blank=True)
    guard_host = models.CharField(_("guard host"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("guard state")
        verbose_name_plural = _("guard state")

    def __str__(self) -> str:
        return "lockdown" if self.lockdown else "normal"

    @classmethod
    def get(cls) -> GuardState:
        state, _created = cls.objects.get_or_create(pk=cls.SINGLETON)
        return state


class GuardHost(models.Model):
    """One host's guard: on a group every node runs its own (its own firewall), and each must
    be seen alive; `GuardState` only keeps the latest beat of any of them."""

    host = models.CharField(_("host"), max_length=200, primary_key=True)
    pid = models.IntegerField(_("guard process id"), null=True, blank=True)
    last_heartbeat = models.DateTimeField(_("last heartbeat"))

    class Meta:
        verbose_name = _("guard host")
        verbose_name_plural = _("guard hosts")
        ordering: ClassVar[list[str]] = ["host"]

    def __str__(self) -> str:
        return self.host


class UsedProbeNonce(models.Model):
    """A probe signature's nonce, stored when a request spends it: a second use is a replay.

    The primary key is the uniqueness check, so it holds across web workers and on SQLite
    and PostgreSQL alike. Rows are useless once their signature has expired (an expired
    signature is refused before its nonce is looked at) and the guard prunes them each round.
    """

    nonce = models.CharField(_("nonce"), max_length=64, primary_key=True)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)
    used_at = models.DateTimeField(_("consumed at"), default=timezone.now)

    class Meta:
        verbose_name = _("used probe nonce")
        verbose_name_plural = _("used probe nonces")

    def __str__(self) -> str:
        return self.nonce
