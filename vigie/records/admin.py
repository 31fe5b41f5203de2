"""Admin screens. IT administrators manage patients and relationships; they see document
metadata but never content — the admin has no way to reach the vault.

Every page here shows patient data, so reading one is audited like changing it
(`audit_reads`). Nobody grants themselves a care relationship, and a document's
`active_content` verdict (and its warnings) cannot be changed by anyone: clearing it would
let a PDF with JavaScript be shown inline.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from vigie.audit.admin_audit import AuditedAdminMixin
from vigie.records.models import CareRelationship, Document, EmergencyAccess, Patient


@admin.register(Patient)
class PatientAdmin(AuditedAdminMixin, admin.ModelAdmin[Patient]):
    audit_reads = True
    list_display = ("ipp", "ins", "family_name", "given_names", "birth_date", "sex", "city")
    search_fields = ("=ipp", "=ins", "family_name", "given_names")
    list_filter = ("sex",)
    date_hierarchy = "birth_date"


@admin.register(Document)
class DocumentAdmin(AuditedAdminMixin, admin.ModelAdmin[Document]):
    audit_reads = True
    # Metadata only: IT manages documents, it does not read them, and a title ("HIV
    # serology", "psychiatric report") can itself be a diagnosis. Not listed, not searched,
    # not on the document's page.
    list_display = ("reference", "kind", "patient", "clinical_date", "source_system", "size")
    list_display_links = ("reference",)
    list_filter = ("kind", "source_system")
    search_fields = ("=id", "=patient__ipp")
    list_select_related = ("patient",)
    exclude = ("wrapped_key",)
    readonly_fields = (
        "id",
        "patient",
        "kind",
        "clinical_date",
        "author",
        "source_system",
        "content_type",
        "size",
        "sha256",
        "received_at",
        "kek_id",
        "active_content",
        "content_warnings",
    )

    @admin.display(description=gettext_lazy("reference"), ordering="id")
    def reference(self, obj: Document) -> str:
        return obj.pk[:12]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The page's subtitle would be str(document), which starts with its title.
        subtitle = _("Document %(reference)s") % {"reference": object_id[:12]}
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "subtitle": subtitle}
        )

    # Documents arrive only through ingest (encrypted, audited) and are never deleted from a
    # web form: "nothing lost".
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CareRelationship)
class CareRelationshipAdmin(AuditedAdminMixin, admin.ModelAdmin[CareRelationship]):
    audit_reads = True

    def audit_action(self, obj: Any, verb: str) -> str:
        # Granting and revoking access to a patient's record are the events a DPO looks for.
        return {"add": "access.grant", "delete": "access.revoke"}.get(verb, "access.change")

    list_display = ("doctor", "patient", "role", "valid_from", "valid_until", "granted_by")
    list_filter = ("role",)
    search_fields = ("=patient__ipp", "patient__family_name", "doctor__username")
    autocomplete_fields = ("patient",)
    raw_id_fields = ("doctor",)
    readonly_fields = ("granted_by",)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        base = super().get_form(request, obj, change=change, **kwargs)
        operator = request.user.pk

        class NotForYourselfForm(base):  # type: ignore[misc,valid-type]
            def clean(self) -> dict[str, Any]:
                cleaned: dict[str, Any] = super().clean()
                doctor = cleaned.get("doctor") or getattr(self.instance, "doctor", None)
                if doctor is not None and doctor.pk == operator:
                    raise forms.ValidationError(
                        _("Nobody can grant themselves access to a patient.")
                    )
                return cleaned

        return NotForYourselfForm

    def save_model(
        self, request: HttpRequest, obj: CareRelationship, form: Any, change: bool
    ) -> None:
        if obj.doctor_id == request.user.pk:
            raise PermissionDenied  # the form refuses it; this stops anything that skips it
        if not change:
            obj.granted_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


@admin.register(EmergencyAccess)
class EmergencyAccessAdmin(AuditedAdminMixin, admin.ModelAdmin[EmergencyAccess]):
    """Read-only: a grant is made only through break-the-glass (audited, second factor)."""

    audit_reads = True

    list_display = ("doctor", "patient", "reason", "granted_at", "expires_at")
    list_filter = ("reason",)
    search_fields = ("=patient__ipp", "doctor__username")
    readonly_fields = ("doctor", "patient", "reason", "justification", "granted_at", "expires_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
