"""Accounts in the admin: IT creates and resets them, never holds their credentials.

- No password field anywhere: a new account, or a reset, yields a one-time invitation code
  (shown once, on the answer to that very request) with which the person chooses a password
  and enrols an authenticator (see accounts.invitations).
- django-otp's own device admins are removed: they show TOTP keys, QR codes and recovery
  codes. An account's page and the list say only which second factors an account has (an
  authenticator, how many passkeys, Pro Santé Connect), never what they are.
- Nobody changes their own role, rights or active flag; a change of role to doctor, and every
  reset, alert the auditor.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts import invitations
from vigie.accounts.models import Passkey, User
from vigie.accounts.psc.models import PscDevice
from vigie.audit.admin_audit import AuditedAdminMixin

for _device_model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_device_model):
        admin.site.unregister(_device_model)

# What nobody may change on their own account: the rights that would let them read more.
SELF_LOCKED_FIELDS = ("role", "is_active", "is_staff", "is_superuser", "groups", "user_permissions")


class InvitedUserCreationForm(forms.ModelForm[User]):
    """A new account without a password: the person sets it through the invitation."""

    class Meta:
        model = User
        fields = ("username", "first_name", "last_name", "email", "role", "rpps")

    def clean_username(self) -> str:
        username = User.normalize_username(self.cleaned_data["username"])
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(_("An account with this identifier already exists."))
        return username


def invitation_page(
    request: HttpRequest, admin_site: admin.AdminSite, issued: list[tuple[User, str, Any]]
) -> HttpResponse:
    """The codes, rendered in the answer itself: never in a message cookie or a session."""
    context = {
        **admin_site.each_context(request),
        "title": _("Invitation to hand over"),
        "issued": [
            {"user": user, "code": code, "expires_at": expires_at}
            for user, code, expires_at in issued
        ],
        "invitation_url": request.build_absolute_uri(reverse("accounts:invitation")),
        "back_url": reverse("admin:accounts_user_changelist"),
    }
    response = TemplateResponse(request, "admin/accounts/invitations_issued.html", context)
    response["Cache-Control"] = "no-store"
    return response


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin[User]):
    list_display = (
        "username",
        "first_name",
        "last_name",
        "role",
        "rpps",
        "second_factor",
        "is_active",
        "last_login",
    )
    search_fields = ("username", "first_name", "last_name", "email", "rpps")
    list_filter = ("role", "is_active")
    actions = ("reset_credentials",)
    add_form = InvitedUserCreationForm
    fieldsets = (
        (None, {"fields": ("username",)}),
        (gettext_lazy("Personal info"), {"fields": ("first_name", "last_name", "email")}),
        (
            gettext_lazy("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Vigie", {"fields": ("role", "rpps", "second_factor", "last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"fields": ("username", "first_name", "last_name", "email", "role", "rpps")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # The list's second-factor column in the list's own query, not three per row.
        def confirmed(model: Any) -> Any:
            return model.objects.filter(user=OuterRef("pk"), confirmed=True)

        passkeys = confirmed(Passkey).values("user").annotate(n=Count("pk")).values("n")
        users: QuerySet[User] = super().get_queryset(request)
        return users.annotate(
            totp_enrolled=Exists(confirmed(TOTPDevice)),
            passkey_count=Coalesce(Subquery(passkeys), 0),
            psc_signed_in=Exists(confirmed(PscDevice)),
        )

    @admin.display(description=gettext_lazy("second factor"))
    def second_factor(self, obj: User) -> str:
        # Whether, never what: the seed, the codes and the passkeys are the person's alone.
        # A Pro Santé Connect sign-in proves both factors itself (the CPS card or e-CPS): an
        # account that has signed in that way has one, though it enrolled nothing here.
        totp = getattr(obj, "totp_enrolled", None)
        if totp is None:
            totp = TOTPDevice.objects.filter(user=obj, confirmed=True).exists()
        count = getattr(obj, "passkey_count", None)
        if count is None:
            count = Passkey.objects.filter(user=obj, confirmed=True).count()
        psc = getattr(obj, "psc_signed_in", None)
        if psc is None:
            psc = PscDevice.objects.filter(user=obj, confirmed=True).exists()
        found = []
        if totp:
            found.append(_("authenticator enrolled"))
        if psc:
            found.append(_("signs in with Pro Santé Connect"))
        if count:
            found.append(
                ngettext("%(count)d passkey", "%(count)d passkeys", count) % {"count": count}
            )
        return ", ".join(found) or _("not enrolled")

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        fields = ["second_factor", "last_login", "date_joined"]
        if obj is not None and obj.pk == request.user.pk:
            fields.extend(SELF_LOCKED_FIELDS)
        return fields

    def get_urls(self) -> list[Any]:
        # Django's "change password" page is the way an administrator would set a doctor's
        # password: it is not served at all.
        return [u for u in super().get_urls() if "password" not in str(u.pattern)]

    def user_change_password(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        raise PermissionDenied

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        by = request.user.get_username()
        old_role = ""
        if change:
            stored = User.objects.get(pk=obj.pk)
            old_role = stored.role
            if obj.pk == request.user.pk and any(
                getattr(stored, f) != getattr(obj, f) for f in SELF_LOCKED_FIELDS[:4]
            ):
                # The form does not offer these fields on one's own account; a forged POST
                # ends here.
                raise PermissionDenied
        else:
            obj.set_unusable_password()
        super().save_model(request, obj, form, change)
        if obj.role != old_role:
            invitations.role_changed(obj, old_role, by=by, request=request)

    def response_add(
        self, request: HttpRequest, obj: User, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued = invitations.issue(obj, by=request.user.get_username(), request=request)
        return invitation_page(
            request, self.admin_site, [(obj, issued.code, issued.invitation.expires_at)]
        )

    @admin.action(
        description=gettext_lazy(
            "Reset credentials: revoke password, second factor and sessions; new invitation"
        )
    )
    def reset_credentials(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse:
        by = request.user.get_username()
        issued = []
        for user in queryset.order_by("username"):
            invitation = invitations.reset(user, by=by, request=request)
            issued.append((user, invitation.code, invitation.invitation.expires_at))
        return invitation_page(request, self.admin_site, issued)
