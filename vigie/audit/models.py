"""The audit trail: one append-only table of events and a one-row head.

Events copy who, whom and what (ids, usernames, roles, IPP) instead of pointing at them with
foreign keys: deleting or renaming a user, a patient or a document must never rewrite or
cascade into the record of who saw what. The database itself refuses UPDATE and DELETE on
the events table (triggers, migration 0002), and every event is chained to the previous one
by hash (see `chain.py`), so a rewrite behind the database's back is detected by
`vigie audit verify`.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils.translation import gettext_lazy as _


class Outcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    DENIED = "denied", _("Denied")
    FAILURE = "failure", _("Failure")


class AuditEvent(models.Model):
    # Gapless and increasing: assigned under the append lock from AuditHead, never by the
    # database's sequence (which skips numbers on rollback).
    seq = models.BigIntegerField(_("sequence number"), primary_key=True)
    at = models.DateTimeField(_("time"), db_index=True)
    # A namespaced tag: document.read, document.read.denied, login.failure, guard.canary…
    action = models.CharField(_("action"), max_length=64, db_index=True)
    # No index of their own: audit_actor_time_idx and audit_patient_time_idx lead with them
    # (migration 0005).
    actor_id = models.BigIntegerField(_("actor id"), null=True, blank=True)
    actor_username = models.CharField(_("actor username"), max_length=150, blank=True)
    actor_role = models.CharField(_("actor role"), max_length=16, blank=True)
    actor_display = models.CharField(_("actor name"), max_length=255, blank=True)
    patient_id = models.BigIntegerField(_("patient id"), null=True, blank=True)
    patient_ipp = models.CharField(_("patient IPP"), max_length=64, blank=True)
    document_id = models.CharField(_("document id"), max_length=64, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    source_ip = models.CharField(_("source address"), max_length=45, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=256, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    extra = models.JSONField(_("details"), default=dict, blank=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64)
    hash = models.CharField(_("hash"), max_length=64)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering: ClassVar[list[str]] = ["seq"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["patient_id", "at"], name="audit_patient_time_idx"),
            models.Index(fields=["actor_id", "at"], name="audit_actor_time_idx"),
            # "Has this doctor opened this document?" (the results inbox, tags.OPENED): one
            # index seek per document. Not (…, action): SQLite then seeks once per opening
            # tag, and the inbox count cost ~1.7× as much (bench/inbox_plan.py); the action
            # is read from the row, for the few rows the seek finds.
            models.Index(fields=["actor_id", "document_id"], name="audit_actor_document_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.actor_username or '-'} ({self.outcome})"


class AuditHead(models.Model):
    """The last event's seq and hash: appending reads it in O(1) under the append lock.

    It also remembers the last checkpoint, so "is a checkpoint due?" costs nothing.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    checkpoint_seq = models.BigIntegerField(default=0)
    checkpoint_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("audit head")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(condition=models.Q(id=1), name="audit_head_single_row"),
        ]

    def __str__(self) -> str:
        return f"head #{self.seq}"


class RefusalCount(models.Model):
    """How many requests from one source were refused in one minute, for one reason.

    Anonymous refusals are counted here instead of each appending to the chain (see
    `refusals.py`): `count` is what happened, `recorded` how much of it the audit trail
    already holds. Not part of the chain, so rows may be updated and, once recorded,
    deleted.
    """

    # An address, or the /64 network of an IPv6 address (see `refusals.source_of`).
    source = models.CharField(_("source"), max_length=45)
    minute = models.DateTimeField(_("minute"))
    action = models.CharField(_("action"), max_length=64)
    reason = models.CharField(_("reason"), max_length=32)
    count = models.PositiveIntegerField(_("count"), default=0)
    recorded = models.PositiveIntegerField(_("recorded"), default=0)

    class Meta:
        verbose_name = _("refusal count")
        verbose_name_plural = _("refusal counts")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["source", "minute", "action", "reason"], name="audit_refusal_count_key"
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["minute"], name="audit_refusal_minute_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.minute:%H:%M} {self.action}/{self.reason}: {self.count}"
