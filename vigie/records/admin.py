"""Admin screens. IT administrators manage patients and relationships; they see document
metadata but never content — the admin has no way to reach the vault."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from vigie.audit.admin_audit import AuditedAdminMixin
from vigie.records.models import CareRelationship, Document, EmergencyAccess, Patient


@admin.register(Patient)
class PatientAdmin(AuditedAdminMixin, admin.ModelAdmin[Patient]):
    list_display = ("ipp", "ins", "family_name", "given_names", "birth_date", "sex", "city")
    search_fields = ("=ipp", "=ins", "family_name", "given_names")
    list_filter = ("sex",)
    date_hierarchy = "birth_date"


@admin.register(Document)
class DocumentAdmin(AuditedAdminMixin, admin.ModelAdmin[Document]):
    list_display = ("title", "kind", "patient", "clinical_date", "source_system", "size")
    list_filter = ("kind", "source_system")
    search_fields = ("=id", "title", "=patient__ipp")
    list_select_related = ("patient",)
    exclude = ("wrapped_key",)
    readonly_fields = (
        "id",
        "patient",
        "kind",
        "title",
        "clinical_date",
        "author",
        "source_system",
        "content_type",
        "size",
        "sha256",
        "received_at",
        "kek_id",
    )

    # Documents arrive only through ingest (encrypted, audited) and are never deleted from a
    # web form: "nothing lost".
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CareRelationship)
class CareRelationshipAdmin(AuditedAdminMixin, admin.ModelAdmin[CareRelationship]):
    def audit_action(self, obj: Any, verb: str) -> str:
        # Granting and revoking access to a patient's record are the events a DPO looks for.
        return {"add": "access.grant", "delete": "access.revoke"}.get(verb, "access.change")

    list_display = ("doctor", "patient", "role", "valid_from", "valid_until", "granted_by")
    list_filter = ("role",)
    search_fields = ("=patient__ipp", "patient__family_name", "doctor__username")
    autocomplete_fields = ("patient",)
    raw_id_fields = ("doctor",)
    readonly_fields = ("granted_by",)

    def save_model(
        self, request: HttpRequest, obj: CareRelationship, form: Any, change: bool
    ) -> None:
        if not change:
            obj.granted_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


@admin.register(EmergencyAccess)
class EmergencyAccessAdmin(admin.ModelAdmin[EmergencyAccess]):
    """Read-only: a grant is made only through break-the-glass (audited, second factor)."""

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
