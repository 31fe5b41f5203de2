"""Patients and their identifiers, documents (stored, or waiting for reconciliation), care
relationships, emergency grants and visits.

A Document row holds metadata and the wrapped data key; its bytes live encrypted in the vault
under the same opaque id. Rows are never deleted by cascade: a patient with documents cannot
be removed by accident (PROTECT), because "nothing lost" outranks convenience.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator
from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from vigie.lib.folding import fold
from vigie.records.identifiers import (
    InvalidIdentifier,
    normalize_nir,
    validate_ipp,
    validate_nir,
)


def new_document_id() -> str:
    # 192 random bits, URL-safe. Never sequential: an id in a URL must not let anyone guess
    # its neighbours (the incident's links were indexed and enumerable).
    return secrets.token_urlsafe(24)


def _validate_ins(value: str) -> None:
    try:
        validate_nir(value)
    except InvalidIdentifier as exc:
        raise ValidationError(str(exc), code="invalid_ins") from None


def _validate_ipp(value: str) -> None:
    try:
        validate_ipp(value)
    except InvalidIdentifier as exc:
        raise ValidationError(str(exc), code="invalid_ipp") from None


class Sex(models.TextChoices):
    FEMALE = "F", _("Female")
    MALE = "M", _("Male")
    UNKNOWN = "U", _("Unknown")


def new_patient_public_id() -> str:
    # Patient pages are addressed by this random id, not the row number, so a URL reveals
    # neither how many patients the clinic has nor who comes next.
    return secrets.token_urlsafe(12)


class Patient(models.Model):
    public_id = models.CharField(
        max_length=32, unique=True, default=new_patient_public_id, editable=False
    )
    ipp = models.CharField(
        _("IPP (local patient id)"), max_length=64, unique=True, validators=[_validate_ipp]
    )
    ins = models.CharField(
        _("INS (national health id)"),
        max_length=15,
        unique=True,
        null=True,
        blank=True,
        validators=[_validate_ins],
    )
    family_name = models.CharField(_("family name"), max_length=150)
    given_names = models.CharField(_("given names"), max_length=150)
    birth_date = models.DateField(_("birth date"))
    # The name again, folded ("MARÉCHAL Zoé" → "marechal zoe") so that one query finds it
    # on SQLite and PostgreSQL alike. The same data as the two name columns, no more
    # sensitive: kept up to date by save(), so never write the names with update().
    search_key = models.CharField(max_length=301, blank=True, default="", editable=False)
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    address_line = models.CharField(_("address"), max_length=255, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=10, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering: ClassVar[list[str]] = ["family_name", "given_names", "birth_date"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["family_name", "given_names"], name="patient_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.family_name.upper()} {self.given_names} ({self.ipp})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.search_key = patient_search_key(self.family_name, self.given_names)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"family_name", "given_names"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "search_key"}
        super().save(*args, **kwargs)

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        # Canonical form before validation, so "1 84 12 …" is checked and stored as
        # "18412…" and exact matching stays exact.
        self.ins = normalize_nir(self.ins) if self.ins else None
        self.ipp = (self.ipp or "").strip()
        super().clean_fields(exclude=exclude)


def patient_search_key(family_name: str, given_names: str) -> str:
    return fold(f"{family_name} {given_names}")[:301]


# Set once, at intake, from the content checks; nothing may change them afterwards.
CONTENT_VERDICT_FIELDS = ("active_content", "content_warnings")


class ContentVerdictChanged(ValidationError):
    pass


def _keep_content_verdict(row: models.Model, update_fields: Collection[str] | None) -> None:
    """Refuse a save that would change a stored document's content verdict.

    Clearing `active_content` would show a PDF with JavaScript inline in the portal; the flag
    comes from the file itself, so no form, admin or script gets to overrule it.
    """
    if row._state.adding or (
        update_fields is not None and not set(update_fields) & set(CONTENT_VERDICT_FIELDS)
    ):
        return
    stored = type(row)._default_manager.filter(pk=row.pk).values(*CONTENT_VERDICT_FIELDS).first()
    if stored is None:
        return
    for field in CONTENT_VERDICT_FIELDS:
        if stored[field] != getattr(row, field):
            raise ContentVerdictChanged(
                _("%(field)s is set at intake and cannot be changed.") % {"field": field},
                code="content_verdict_read_only",
            )


class DocumentKind(models.TextChoices):
    LAB_RESULT = "lab_result", _("Lab result")
    IMAGING_REPORT = "imaging_report", _("Imaging report")
    CONSULTATION_LETTER = "consultation_letter", _("Consultation letter")
    DISCHARGE_SUMMARY = "discharge_summary", _("Discharge summary")
    PRESCRIPTION = "prescription", _("Prescription")
    OTHER = "other", _("Other")


class StoredDocument(models.Model):
    """What a stored document is, whether filed under a patient (`Document`) or waiting for
    one (`PendingDocument`): its blob's id, what the sender said it is, and how its bytes
    are sealed. An attached pending document's row becomes a Document with these values."""

    id = models.CharField(primary_key=True, max_length=64, default=new_document_id, editable=False)
    kind = models.CharField(_("kind"), max_length=32, choices=DocumentKind.choices)
    title = models.CharField(_("title"), max_length=255)
    clinical_date = models.DateField(_("clinical date"))
    author = models.CharField(_("author"), max_length=255, blank=True)
    source_system = models.CharField(_("source system"), max_length=100)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.BigIntegerField(_("size (bytes)"))
    sha256 = models.CharField(_("SHA-256 of the content"), max_length=64)
    # The per-document data key, wrapped by key-encryption key `kek_id` of the keyring.
    # Rotation rewrites these two columns only; the blob is never re-encrypted.
    kek_id = models.CharField(_("key-encryption key"), max_length=64, editable=False)
    wrapped_key = models.BinaryField(_("wrapped data key"), editable=False)
    # Set at intake when the file can act on its own (a PDF with JavaScript, launch actions,
    # embedded files): it is stored, but served as a download only, never inside the portal.
    active_content = models.BooleanField(_("active content"), default=False)
    content_warnings = models.JSONField(_("content warnings"), default=list, blank=True)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        _keep_content_verdict(self, kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    def stored_fields(self) -> dict[str, Any]:
        """These shared fields' values, to file the same sealed blob under another row."""
        values = {name: getattr(self, name) for name in STORED_FIELDS}
        # PostgreSQL hands a BinaryField back as a memoryview of the fetched row.
        values["wrapped_key"] = bytes(values["wrapped_key"])
        return values


STORED_FIELDS = tuple(field.name for field in StoredDocument._meta.local_fields)


class Document(StoredDocument):
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="documents", verbose_name=_("patient")
    )
    received_at = models.DateTimeField(_("received at"), default=timezone.now)

    class Meta:
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        ordering: ClassVar[list[str]] = ["-clinical_date", "-received_at"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["patient", "-clinical_date"], name="document_timeline_idx"),
            models.Index(fields=["kek_id"], name="document_kek_idx"),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in DocumentKind]), name="document_kind_known"
            ),
            models.CheckConstraint(condition=Q(size__gte=0), name="document_size_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.clinical_date:%Y-%m-%d})"


class CareRelationshipQuerySet(QuerySet["CareRelationship"]):
    def active(self, at: datetime | None = None) -> CareRelationshipQuerySet:
        moment = at or timezone.now()
        return self.filter(valid_from__lte=moment).filter(
            Q(valid_until__isnull=True) | Q(valid_until__gt=moment)
        )


class CareRole(models.TextChoices):
    TREATING = "treating", _("Treating physician")
    REFERRING = "referring", _("Referring physician")
    CONSULTING = "consulting", _("Consulting specialist")


class DoctorPatientLink(models.Model):
    """What a care relationship and a break-the-glass grant share: one doctor, one patient,
    both kept while the link exists (PROTECT: a link is evidence the auditor reviews).

    No reverse accessors (`related_name="+"`): scope is asked of `records.access`, which
    queries the links themselves, never walked from a user or a patient.
    """

    doctor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("doctor"),
    )
    patient = models.ForeignKey(
        Patient,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("patient"),
    )

    class Meta:
        abstract = True


class CareRelationship(DoctorPatientLink):
    role = models.CharField(_("role"), max_length=16, choices=CareRole.choices)
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        verbose_name=_("granted by"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    objects = CareRelationshipQuerySet.as_manager()

    class Meta:
        verbose_name = _("care relationship")
        verbose_name_plural = _("care relationships")
        ordering: ClassVar[list[str]] = ["-valid_from"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
                name="care_relationship_period_valid",
            ),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in CareRole]), name="care_role_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.doctor} → {self.patient} ({self.get_role_display()})"

    def is_active(self, at: datetime | None = None) -> bool:
        moment = at or timezone.now()
        return self.valid_from <= moment and (self.valid_until is None or moment < self.valid_until)

    def clean(self) -> None:
        from vigie.accounts.models import Role

        if self.doctor_id is not None and self.doctor.role != Role.DOCTOR:
            raise ValidationError({"doctor": _("Only doctors can have care relationships.")})


class EmergencyReason(models.TextChoices):
    VITAL_EMERGENCY = "vital_emergency", _("Vital emergency")
    PATIENT_UNCONSCIOUS = "patient_unconscious", _("Patient unconscious")
    CONTINUITY_OF_CARE = "continuity_of_care", _("Continuity of care")
    OTHER = "other", _("Other")


# Long enough that "urgence" alone is refused: the auditor must be able to understand the
# situation from the justification without calling the doctor.
EMERGENCY_JUSTIFICATION_MIN_LENGTH = 20


class EmergencyAccessQuerySet(QuerySet["EmergencyAccess"]):
    def active(self, at: datetime | None = None) -> EmergencyAccessQuerySet:
        moment = at or timezone.now()
        return self.filter(granted_at__lte=moment, expires_at__gt=moment)


class EmergencyAccess(DoctorPatientLink):
    """A break-the-glass grant: a doctor without a care relationship reads one patient's
    records for a few hours, after stating why. Rows are kept forever (PROTECT) because each
    one is reviewed by the auditor; expiry, not deletion, ends the access."""

    reason = models.CharField(_("reason"), max_length=32, choices=EmergencyReason.choices)
    justification = models.TextField(
        _("justification"),
        validators=[MinLengthValidator(EMERGENCY_JUSTIFICATION_MIN_LENGTH)],
    )
    granted_at = models.DateTimeField(_("granted at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))

    objects = EmergencyAccessQuerySet.as_manager()

    class Meta:
        verbose_name = _("emergency access")
        verbose_name_plural = _("emergency accesses")
        ordering: ClassVar[list[str]] = ["-granted_at"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["doctor", "patient", "expires_at"], name="emergency_scope_idx"),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("granted_at")),
                name="emergency_access_period_valid",
            ),
            models.CheckConstraint(
                condition=Q(reason__in=[r.value for r in EmergencyReason]),
                name="emergency_reason_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.doctor} ⚠ {self.patient} ({self.get_reason_display()})"

    def is_active(self, at: datetime | None = None) -> bool:
        moment = at or timezone.now()
        return self.granted_at <= moment < self.expires_at


class PatientIdentifier(models.Model):
    """An identifier another system gives this patient, e.g. a laboratory's own IPP.

    Intake matches exactly on (source, value): an IPP means something only within the
    system that assigned it.
    """

    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="identifiers", verbose_name=_("patient")
    )
    source = models.CharField(_("assigning system"), max_length=100)
    value = models.CharField(_("identifier"), max_length=64)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("patient identifier")
        verbose_name_plural = _("patient identifiers")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["source", "value"], name="patient_identifier_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.value}"


class PendingStatus(models.TextChoices):
    PENDING = "pending", _("To reconcile")
    ATTACHED = "attached", _("Attached to a patient")
    REJECTED = "rejected", _("Rejected")


class PendingDocument(StoredDocument):
    """A received document whose patient could not be identified exactly.

    It is stored encrypted like any document (its id is its blob's id, and becomes the
    Document's id once attached) but belongs to nobody: no doctor can see it until an
    administrator attaches it to a patient. Vigie never attaches a document on a guess.
    """

    status = models.CharField(
        _("status"), max_length=16, choices=PendingStatus.choices, default=PendingStatus.PENDING
    )
    received_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)
    channel = models.CharField(_("channel"), max_length=16)
    reason = models.CharField(_("why it was not matched"), max_length=500)
    # What the sender said about the patient, as received (identifiers and demographics).
    identifiers = models.JSONField(_("identifiers received"), default=dict, blank=True)
    demographics = models.JSONField(_("demographics received"), default=dict, blank=True)
    resolved_by = models.CharField(_("resolved by"), max_length=150, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolution_note = models.CharField(_("note"), max_length=500, blank=True)
    document = models.OneToOneField(
        Document,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("document"),
    )

    class Meta:
        verbose_name = _("document to reconcile")
        verbose_name_plural = _("documents to reconcile")
        ordering: ClassVar[list[str]] = ["-received_at"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["kek_id"], name="pending_kek_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.source_system}, {self.received_at:%Y-%m-%d %H:%M})"


def results_label(document_id: str) -> str:
    # The "/" no document id has: the results' wrapped key and ciphertext can never pass for
    # a document's blob or key, nor a document's for these.
    return f"results/{document_id}"


class SealedResults(models.Model):
    """A lab document's parsed results (`records.results.ResultSet`), sealed beside it.

    The document's blob stays the message exactly as received; this row holds the values
    a physician reads as a table and a history, encrypted under their own data key (wrapped
    by the keyring like a document's, rotated with them: `records.keys`). The id is the
    vault label, `results/<document id>`: the same for a document still to be reconciled
    and for the Document it becomes, so attaching moves nothing. Written in the document
    row's transaction, so there is never a document without its results, nor the reverse.
    No column holds a code, a value or a flag in clear.
    """

    id = models.CharField(primary_key=True, max_length=80, editable=False)
    kek_id = models.CharField(_("key-encryption key"), max_length=64, editable=False)
    wrapped_key = models.BinaryField(_("wrapped data key"), editable=False)
    # Part 0: the result set's canonical JSON; part 1: the sender's embedded document.
    results = models.BinaryField(_("sealed results"), editable=False)
    attachment = models.BinaryField(_("sealed attachment"), null=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("sealed lab results")
        verbose_name_plural = _("sealed lab results")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["kek_id"], name="results_kek_idx"),
        ]

    def __str__(self) -> str:
        return self.id
