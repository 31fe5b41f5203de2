from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from vigie.accounts.models import User
from vigie.audit.admin_audit import AuditedAdminMixin


@admin.register(User)
class UserAdmin(AuditedAdminMixin, DjangoUserAdmin[User]):
    list_display = ("username", "first_name", "last_name", "role", "is_active", "last_login")
    list_filter = ("role", "is_active")
    fieldsets = (*(DjangoUserAdmin.fieldsets or ()), ("Vigie", {"fields": ("role",)}))
    add_fieldsets = (
        *(DjangoUserAdmin.add_fieldsets or ()),
        ("Vigie", {"fields": ("role", "first_name", "last_name")}),
    )
