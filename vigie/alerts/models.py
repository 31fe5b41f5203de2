"""Alerts: something a person must look at (an emergency access, a canary touched, a leak)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Severity(models.TextChoices):
    INFO = "info", _("Information")
    WARNING = "warning", _("Warning")
    CRITICAL = "critical", _("Critical")


class Audience(models.TextChoices):
    # Who should act: IT for the perimeter and the machine, the DPO for access to records.
    ADMIN = "admin", _("Administrator (IT)")
    AUDITOR = "auditor", _("Auditor (data protection officer)")


class Alert(models.Model):
    kind = models.CharField(_("kind"), max_length=64, db_index=True)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices)
    summary = models.CharField(_("summary"), max_length=500)
    details = models.JSONField(_("details"), default=dict, blank=True)
    # Repeats of one problem (same key, not yet acknowledged) bump `count` instead of piling up.
    dedupe_key = models.CharField(_("deduplication key"), max_length=200)
    count = models.PositiveIntegerField(_("occurrences"), default=1)
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now)
    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    # Copied, not a foreign key: removing an account must not rewrite who acknowledged what.
    acknowledged_by = models.CharField(_("acknowledged by"), max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering: ClassVar[list[str]] = ["-last_seen"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=Q(acknowledged_at__isnull=True),
                name="alert_one_open_per_dedupe_key",
            ),
            models.CheckConstraint(
                condition=Q(severity__in=[s.value for s in Severity]), name="alert_severity_known"
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.summary} (×{self.count})"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None
