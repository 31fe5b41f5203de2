"""Intake's own records: system credentials, idempotent replies, messages already taken."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ApiKey(models.Model):
    """A credential for a system (a lab's middleware, the hospital's HIS), never a person.

    The secret is shown once, at creation; only its SHA-256 is kept (it is 256 random bits,
    so a fast hash is enough: there is nothing to brute-force). Its only scope is ingest: no
    code path lets a key read a document.
    """

    name = models.CharField(_("name"), max_length=150, unique=True)
    # The public part of the key ("vk_<prefix>_<secret>"), to find the row without a scan.
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(_("secret hash"), max_length=64, editable=False)
    # What Document.source_system says for documents sent with this key.
    source_system = models.CharField(_("source system"), max_length=100)
    # Empty: any address; otherwise the key is refused from anywhere else.
    allowed_networks = models.JSONField(_("allowed networks"), default=list, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    created_by = models.CharField(_("created by"), max_length=150, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.CharField(_("revoked by"), max_length=150, blank=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering: ClassVar[list[str]] = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (vk_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The answer given to a request with an Idempotency-Key, replayed on retries."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(_("idempotency key"), max_length=255)
    request_hash = models.CharField(_("request hash"), max_length=64)
    status_code = models.PositiveSmallIntegerField(_("status"))
    response = models.JSONField(_("response body"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("idempotent reply")
        verbose_name_plural = _("idempotent replies")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.status_code}"


class ReceivedMessage(models.Model):
    """A message an intake channel has taken, by its sender's id (HL7 MSH-10, a file's
    hash): committed in the same transaction as the document, so a retried delivery is
    recognised and acknowledged without storing the document twice."""

    channel = models.CharField(_("channel"), max_length=16)
    source = models.CharField(_("source"), max_length=200)
    control_id = models.CharField(_("control id"), max_length=200)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    document_id = models.CharField(_("document"), max_length=64, blank=True)
    pending_id = models.CharField(_("document to reconcile"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("received message")
        verbose_name_plural = _("received messages")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["channel", "source", "control_id"], name="received_message_unique"
            ),
            models.CheckConstraint(
                condition=~Q(document_id="") | ~Q(pending_id=""),
                name="received_message_has_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.source}:{self.control_id}"


class MllpSender(models.Model):
    """An HL7 v2 sender over MLLP, configured by an administrator (`vigie mllpsender`).

    HL7 v2 has no authentication of its own: who sends is who proved it in the TLS
    handshake. A sender with a certificate is found by that certificate's SHA-256
    fingerprint (the client CA only says "one of ours"; the fingerprint says which lab);
    a sender without one is the local integration engine that a plain, loopback-only
    listener speaks for (`vigie intake mllp --sender NAME`). Either way it has exactly one
    source system: what doctors see as the origin of its documents and the only system
    whose patient numbers it may name.
    """

    name = models.CharField(_("name"), max_length=150, unique=True)
    source_system = models.CharField(_("source system"), max_length=100)
    # SHA-256 of the client certificate (DER), lowercase hex; empty for a loopback sender.
    fingerprint = models.CharField(_("certificate fingerprint"), max_length=64, blank=True)
    subject = models.CharField(_("certificate subject"), max_length=500, blank=True)
    not_after = models.DateTimeField(_("certificate expires"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    created_by = models.CharField(_("created by"), max_length=150, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.CharField(_("revoked by"), max_length=150, blank=True)

    class Meta:
        verbose_name = _("MLLP sender")
        verbose_name_plural = _("MLLP senders")
        ordering: ClassVar[list[str]] = ["name"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            # One certificate, one sender: otherwise which source would it speak for?
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=~Q(fingerprint=""),
                name="mllp_sender_fingerprint_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.source_system})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
