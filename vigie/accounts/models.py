"""The user model. It exists from the first migration because Django cannot swap it later."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    # Separation of duties: IT administers, the DPO audits, only doctors read documents.
    DOCTOR = "doctor", _("Doctor")
    ADMIN = "admin", _("Administrator (IT)")
    AUDITOR = "auditor", _("Auditor (data protection officer)")


class VigieUserManager(UserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> User:
        # Identifiers are case-insensitive so "Dr.Martin" and "dr.martin" are one account
        # (and one lockout counter), never two doors.
        return self.get(username__iexact=(username or "").strip())

    def create_superuser(
        self, username: str, email: str | None = None, password: str | None = None, **extra: Any
    ) -> User:
        # `vigie createsuperuser` makes the first IT administrator: without a role the row
        # breaks the user_role_known constraint (found when writing the install guide).
        extra.setdefault("role", Role.ADMIN)
        return super().create_superuser(username, email, password, **extra)


class User(AbstractUser):
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)

    objects: ClassVar[VigieUserManager] = VigieUserManager()

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=models.Q(role__in=[r.value for r in Role]), name="user_role_known"
            ),
        ]

    @classmethod
    def normalize_username(cls, username: str) -> str:
        # One spelling per identifier: NFKC (Django), trimmed, lower-cased.
        return str(super().normalize_username(username)).strip().lower()

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.username = self.normalize_username(self.username)
        super().save(*args, **kwargs)

    @property
    def is_doctor(self) -> bool:
        return self.role == Role.DOCTOR

    def __str__(self) -> str:
        full = self.get_full_name()
        return f"{full} ({self.username})" if full else self.username
