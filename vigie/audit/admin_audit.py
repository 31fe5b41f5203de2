"""Every change made through the Django admin leaves an audit event.

The admin is where IT grants and revokes doctors' access to patients and manages accounts, so
those changes belong in the same tamper-evident trail as document reads. We hook the admin's
own logging points (`log_addition`, `log_change`, `log_deletions`), which Django calls for
every add, edit (password changes included), single and bulk deletion; for adds and edits
they run inside the admin's transaction, so the event commits with the change or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.http import HttpRequest

from vigie.audit.log import record


def _patient_of(obj: models.Model) -> Any:
    from vigie.records.models import Patient

    if isinstance(obj, Patient):
        return obj
    return getattr(obj, "patient", None)


class AuditedAdminMixin:
    """Mix into a ModelAdmin (first in the bases). Subclasses may rename the actions."""

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
