"""Every change made through the Django admin leaves an audit event.

The admin is where IT grants and revokes doctors' access to patients and manages accounts, so
those changes belong in the same tamper-evident trail as document reads. We hook the admin's
own logging points (`log_addition`, `log_change`, `log_deletions`), which Django calls for
every add, edit (password changes included), single and bulk deletion; for adds and edits
they run inside the admin's transaction, so the event commits with the change or not at all.

Reads are on the record too where a page shows patient data (`audit_reads = True`): the
list and search pages (with the search terms and filters) and each object's page, written
before the page is built, like any other read ("audit before disclosure").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.admin.utils import NestedObjects
from django.db import models, router
from django.http import HttpRequest, HttpResponse

from vigie.audit.log import record


def _patient_of(obj: models.Model) -> Any:
    from vigie.records.models import Patient

    if isinstance(obj, Patient):
        return obj
    return getattr(obj, "patient", None)


def _touches_patient_data(model: type[models.Model], objs: Any) -> bool:
    """Whether deleting `objs` would cascade to, or be blocked by, patient data."""
    from vigie.records.models import (
        CareRelationship,
        Document,
        EmergencyAccess,
        Patient,
        PendingDocument,
    )

    patient_data = {Patient, Document, CareRelationship, EmergencyAccess, PendingDocument}
    collector = NestedObjects(using=router.db_for_write(model))
    collector.collect(objs)
    touched = set(collector.model_objs) | {type(obj) for obj in collector.protected}
    return bool(touched & patient_data)


class AuditedAdminMixin:
    """Mix into a ModelAdmin (first in the bases). Subclasses may rename the actions."""

    # Set on admins whose pages show patient data: reading them is audited as well.
    audit_reads = False

    def _audit_read(self, request: HttpRequest, verb: str, object_id: str | None = None) -> None:
        model = self.model  # type: ignore[attr-defined]
        meta = model._meta
        obj = None
        if object_id is not None:
            obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        params = {k: request.GET.getlist(k) for k in sorted(request.GET) if k != "p"}
        record(
            f"admin.{meta.app_label}.{meta.model_name}.{verb}",
            request=request,
            patient=_patient_of(obj) if obj is not None else None,
            extra={
                "model": meta.label_lower,
                **({"object_id": str(object_id), "object": str(obj)[:200]} if obj else {}),
                # What was searched and filtered is what the DPO needs to judge the read.
                **({"query": params} if params else {}),
            },
        )

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        # Lockdown holds here too: every page of a patient-data admin (list,
        # object, history, delete confirmation, another form's autocomplete) reads through
        # this queryset, so the access decision's own check refuses them all while the
        # guard's lockdown is on. The LockdownMiddleware draws the 503 page.
        if self.audit_reads:
            from vigie.records.access import ensure_served

            ensure_served()
        result: models.QuerySet[Any] = super().get_queryset(request)  # type: ignore[misc]
        return result

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # The confirmation page of any deletion (a doctor's account, say) lists what would go
        # with it, care relationships and their patients included: during a lockdown it is
        # refused whenever that list would name patient data.
        if _touches_patient_data(self.model, objs):  # type: ignore[attr-defined]
            from vigie.records.access import ensure_served

            ensure_served()
        return super().get_deleted_objects(objs, request)  # type: ignore[misc]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if self.audit_reads and request.method in ("GET", "HEAD"):
            self._audit_read(request, "list")
        result: HttpResponse = super().changelist_view(request, extra_context)  # type: ignore[misc]
        return result

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if self.audit_reads and request.method in ("GET", "HEAD"):
            self._audit_read(request, "view", object_id)
        result: HttpResponse = super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        return result

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if self.audit_reads:
            self._audit_read(request, "history", object_id)
        result: HttpResponse = super().history_view(request, object_id, extra_context)  # type: ignore[misc]
        return result

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The confirmation page names the object (a patient, for instance).
        if self.audit_reads and request.method in ("GET", "HEAD"):
            self._audit_read(request, "view", object_id)
        result: HttpResponse = super().delete_view(request, object_id, extra_context)  # type: ignore[misc]
        return result

    def get_search_results(
        self, request: HttpRequest, queryset: models.QuerySet[Any], search_term: str
    ) -> tuple[models.QuerySet[Any], bool]:
        match = getattr(request, "resolver_match", None)
        if self.audit_reads and match is not None and match.url_name == "autocomplete":
            # The autocomplete widget of another form (a care relationship's patient) is a
            # search of this model too; its list page is audited in changelist_view.
            self._audit_read(request, "search")
        found = super().get_search_results(request, queryset, search_term)  # type: ignore[misc]
        result: tuple[models.QuerySet[Any], bool] = found
        return result

    def audit_action(self, obj: models.Model, verb: str) -> str:
        meta = obj._meta
        return f"admin.{meta.app_label}.{meta.model_name}.{verb}"

    def _audit(self, request: HttpRequest, obj: models.Model, verb: str, message: Any) -> None:
        record(
            self.audit_action(obj, verb),
            request=request,
            patient=_patient_of(obj),
            extra={
                "model": obj._meta.label_lower,
                "object_id": str(obj.pk),
                "object": str(obj)[:200],
                # Django's change message names the changed fields, never their values.
                "change": str(message)[:1000] if message else "",
            },
        )

    def log_addition(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        self._audit(request, obj, "add", message)
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        self._audit(request, obj, "change", message)
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: Iterable[models.Model]) -> Any:
        objects = list(queryset)
        for obj in objects:
            self._audit(request, obj, "delete", "")
        return super().log_deletions(request, objects)  # type: ignore[misc]
