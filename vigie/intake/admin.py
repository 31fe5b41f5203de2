"""API keys in the admin: create (the key shown once), list, revoke. Nothing else.

Creation goes through `apikeys.create_key` (hashed, audited). The form's answer is a redirect
(POST/redirect/GET, so a reload never creates a second key) to a page that shows the full
key once, in a read-only field to copy, with a link back to the list. Between the two the
key waits in the session sealed by the vault (`seal_small`): the session row holds only
ciphertext, the page opens and forgets it, and a reload says the key was already shown.
It is never put in the message cookie. Existing keys are read-only (a key's scope or
networks change by creating a new one and revoking the old, which the audit trail then
shows), never deleted (audit events name them), and their secret hash is not displayed.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from vigie import vault
from vigie.intake.apikeys import ApiKeyError, create_key, revoke
from vigie.intake.models import ApiKey

_SHOWN_FIELDS = (
    "name",
    "prefix",
    "source_system",
    "allowed_networks",
    "created_at",
    "created_by",
    "last_used_at",
    "revoked_at",
    "revoked_by",
)
# Set on the request by save_model, read by response_add (same request, never stored).
_NEW_KEY = "_vigie_new_api_key"
# The sealed key between the form's redirect and the page that shows it, once.
_SEALED_KEY = "vigie_api_key_once"


def _seal_for_display(request: HttpRequest, key_pk: int, text: str) -> None:
    secret_id = f"api-key-once-{key_pk}-{secrets.token_hex(8)}"
    kek_id, wrapped, ciphertext = vault.seal_small(secret_id, text.encode("ascii"))
    request.session[_SEALED_KEY] = {
        "pk": key_pk,
        "id": secret_id,
        "kek": kek_id,
        "wrapped": base64.b64encode(wrapped).decode("ascii"),
        "sealed": base64.b64encode(ciphertext).decode("ascii"),
    }


def _open_once(request: HttpRequest, key_pk: int) -> str | None:
    """The key waiting for this page, forgotten as it is read (None: already shown)."""
    stored = request.session.pop(_SEALED_KEY, None)
    if not isinstance(stored, dict) or stored.get("pk") != key_pk:
        return None
    try:
        return vault.open_small(
            str(stored["id"]),
            str(stored["kek"]),
            base64.b64decode(stored["wrapped"]),
            base64.b64decode(stored["sealed"]),
        ).decode("ascii")
    except (KeyError, ValueError, vault.VaultError):
        return None


class ApiKeyCreationForm(forms.ModelForm[ApiKey]):
    networks = forms.CharField(
        label=gettext_lazy("allowed networks"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy(
            "One address or network per line (10.20.0.0/16). Empty: any address."
        ),
    )

    class Meta:
        model = ApiKey
        fields = ("name", "source_system")

    def clean_networks(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["networks"].splitlines()]
        cleaned = []
        for line in filter(None, lines):
            try:
                cleaned.append(str(ipaddress.ip_network(line, strict=False)))
            except ValueError:
                raise forms.ValidationError(
                    _("%(value)s is not an address or network.") % {"value": line}
                ) from None
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ("name", "source_system", "prefix", "created_at", "last_used_at", "active")
    list_filter = ("source_system",)
    search_fields = ("name", "=prefix", "source_system")
    actions = ("revoke_keys",)
    fields = _SHOWN_FIELDS

    @admin.display(boolean=True, description=pgettext_lazy("an API key", "active"))
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm[ApiKey]]:
        if obj is None:
            return ApiKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ("name", "source_system", "networks")
        return _SHOWN_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return () if obj is None else _SHOWN_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoke instead: audit events and documents' history name the key.
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:  # read-only: there is nothing to save on an existing key
            return
        try:
            key, text = create_key(
                form.cleaned_data["name"],
                source_system=form.cleaned_data["source_system"],
                networks=form.cleaned_data.get("networks") or [],
                by=request.user.get_username(),
            )
        except ApiKeyError as exc:
            # A concurrent creation with the same name: the form had checked it just before.
            raise forms.ValidationError(str(exc)) from None
        obj.pk = key.pk
        obj.refresh_from_db()
        obj._state.adding = False
        setattr(request, _NEW_KEY, text)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        text = getattr(request, _NEW_KEY, None)
        if text is None:
            return super().response_add(request, obj, post_url_continue)
        _seal_for_display(request, obj.pk, text)
        # A redirect, not a page: reloading what follows cannot post the form again.
        return HttpResponseRedirect(reverse("admin:intake_apikey_created", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        created = path(
            "<int:key_id>/created/",
            self.admin_site.admin_view(self.created_view),
            name="intake_apikey_created",
        )
        return [created, *super().get_urls()]

    def created_view(self, request: HttpRequest, key_id: int) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        key = get_object_or_404(ApiKey, pk=key_id)
        context = {
            **self.admin_site.each_context(request),
            "title": _("API key created"),
            "opts": self.model._meta,
            "key": key,
            "key_text": _open_once(request, key.pk),
            "list_url": reverse("admin:intake_apikey_changelist"),
        }
        response = TemplateResponse(request, "admin/intake/apikey_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=gettext_lazy("Revoke the selected API keys"))
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            revoke(key, by=request.user.get_username())
            revoked += 1
        self.message_user(
            request,
            _("%(count)d API key(s) revoked.") % {"count": revoked},
            messages.SUCCESS,
        )
