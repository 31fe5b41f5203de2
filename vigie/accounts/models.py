"""The user model. It exists from the first migration because Django cannot swap it later."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice


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


# django-stubs cannot type the reverse managers of PscDevice.user and Passkey.user
# (django-otp's Device, which declares them, ships no types); nothing uses them.
class User(AbstractUser):  # type: ignore[django-manager-missing]
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    # The doctor's national identifier (Répertoire partagé des professionnels de santé): the
    # one link between a Pro Santé Connect sign-in and this account (accounts/psc). NULL,
    # not "", when unknown, so that the uniqueness holds among the numbers given.
    rpps = models.CharField(
        _("RPPS number"),
        max_length=11,
        unique=True,
        null=True,
        blank=True,
        validators=[RegexValidator(r"^\d{11}\Z", _("An RPPS number has 11 digits."))],
        help_text=_("11 digits; lets the doctor sign in with Pro Santé Connect."),
    )

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
        # The admin's empty field is "no number", never a second account with number "".
        self.rpps = (self.rpps or "").strip() or None
        super().save(*args, **kwargs)

    @property
    def is_doctor(self) -> bool:
        return self.role == Role.DOCTOR

    def __str__(self) -> str:
        full = self.get_full_name()
        return f"{full} ({self.username})" if full else self.username


def new_secret_id() -> str:
    # Also the label the vault binds the ciphertext to (16 to 64 URL-safe characters).
    return secrets.token_urlsafe(24)


class TotpSeed(models.Model):
    """The sealed seed of one authenticator, so a database dump holds no usable seed.

    django-otp's own `key` column then holds a throwaway random value that nothing knows
    (not a constant, which would be a key anyone could compute codes from). The seed opens
    only with the keyring, which is kept apart from the database and its backups.
    """

    # Named `id` with `kek_id` and `wrapped_key` like documents, so key rotation
    # (records.keys) rewraps these data keys too.
    id = models.CharField(primary_key=True, max_length=64, default=new_secret_id, editable=False)
    device = models.OneToOneField(
        "otp_totp.TOTPDevice", on_delete=models.CASCADE, related_name="vigie_seed"
    )
    kek_id = models.CharField(max_length=64, editable=False)
    wrapped_key = models.BinaryField(editable=False)
    ciphertext = models.BinaryField(editable=False)

    class Meta:
        verbose_name = _("sealed authenticator seed")
        verbose_name_plural = _("sealed authenticator seeds")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["kek_id"], name="totpseed_kek_idx"),
        ]

    def __str__(self) -> str:
        return f"sealed seed of authenticator {self.device_id}"


class SealedTOTPDevice(TOTPDevice):  # type: ignore[misc]  # django-otp ships no types
    """django-otp's TOTP device whose key is read from its sealed seed.

    Every check and enrolment in Vigie goes through this proxy (accounts.otp): the key
    column of the table never holds the real seed.
    """

    class Meta:
        proxy = True
        verbose_name = _("authenticator")

    @property
    def bin_key(self) -> bytes:
        from vigie.accounts.seeds import open_seed

        return open_seed(self)


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def usable(self) -> InvitationQuerySet:
        return self.filter(used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=Now())


class Invitation(models.Model):
    """A one-time code with which a person sets their own password and second factor.

    Administrators create accounts and reset them, but never choose or learn the final
    credentials: they hand over this code (shown once), the person does the rest. Only a
    hash of the code is stored.
    """

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("user")
    )
    code_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("expires at"), editable=False)
    created_by = models.CharField(_("created by"), max_length=150, blank=True, editable=False)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering: ClassVar[list[str]] = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user.username} ({self.created_at:%Y-%m-%d %H:%M})"


class LoginThrottle(models.Model):
    """Attempts counted against one source address or one account (see accounts/lockout.py).

    A row is claimed with one conditional UPDATE before any password or code is checked, so
    concurrent requests (any number of workers and threads) can never be verified beyond the
    schedule; rows exist for identifiers that match no account too (no account probing).
    """

    class Scope(models.TextChoices):
        # Every password and code from one address: a hard lock per window.
        ADDRESS = "address", _("source address")
        # Passwords on one identifier: a progressive delay an outsider cannot turn into a lock.
        ACCOUNT = "account", _("account (password)")
        # Codes on one account (whoever sends them holds the password): a hard lock.
        SECOND_FACTOR = "second_factor", _("account (second factor)")

    scope = models.CharField(max_length=16, choices=Scope.choices)
    key = models.CharField(max_length=255)
    attempts = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True)

    class Meta:
        verbose_name = _("login throttle")
        verbose_name_plural = _("login throttles")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["scope", "key"], name="login_throttle_scope_key"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key} ({self.attempts})"


class Passkey(Device):  # type: ignore[misc]  # django-otp ships no types
    """A WebAuthn credential (passkey) of one user, checked by accounts/passkeys.py.

    A django-otp Device, so that a passkey proved after the password verifies the session
    exactly as a TOTP code does (django_otp.login, the same middleware, the same
    deny-by-default). A revoked passkey is kept (unconfirmed, `revoked_at` set) so that a
    later use of it is recognised and audited, not treated as an unknown credential.
    """

    # base64url of the credential id (at most 1023 bytes, so 1364 characters).
    credential_id: models.CharField[str, str] = models.CharField(
        max_length=1400, unique=True, editable=False
    )
    public_key: models.BinaryField[bytes | memoryview, bytes | memoryview] = models.BinaryField(
        editable=False
    )  # COSE key: public, not a secret
    # Random bytes given to the authenticator as the WebAuthn user.id (never the username).
    user_handle: models.BinaryField[bytes | memoryview, bytes | memoryview] = models.BinaryField(
        editable=False
    )
    sign_count: models.PositiveBigIntegerField[int, int] = models.PositiveBigIntegerField(
        default=0, editable=False
    )
    transports: models.JSONField[list[str], list[str]] = models.JSONField(
        default=list, editable=False
    )
    aaguid: models.CharField[str, str] = models.CharField(max_length=36, blank=True, editable=False)
    backed_up: models.BooleanField[bool, bool] = models.BooleanField(default=False, editable=False)
    registered_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        default=timezone.now, editable=False
    )
    used_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True, editable=False
    )
    revoked_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True, editable=False
    )
    revoked_reason: models.CharField[str, str] = models.CharField(
        max_length=32, blank=True, editable=False
    )

    class Meta:
        verbose_name = _("passkey")
        verbose_name_plural = _("passkeys")

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"


class PasskeyChallenge(models.Model):
    """One WebAuthn challenge, usable once, by the session it was issued to.

    Not kept in the session itself: two concurrent requests of one session would both read
    it before either saved; deleting this row is one conditional statement, so only one
    request ever gets a challenge.
    """

    class Purpose(models.TextChoices):
        REGISTER = "register", _("registration")
        LOGIN = "login", _("sign-in with a passkey alone")
        SECOND_FACTOR = "second_factor", _("second factor after the password")
        REAUTH = "reauth", _("re-authentication")

    challenge = models.BinaryField(editable=False)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, editable=False)
    # SHA-256 of the session key: the row is bound to the session, never readable as one.
    session_hash = models.CharField(max_length=64, db_index=True, editable=False)
    user = models.ForeignKey(User, null=True, on_delete=models.CASCADE, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("passkey challenge")
        verbose_name_plural = _("passkey challenges")

    def __str__(self) -> str:
        return f"{self.purpose} challenge {self.pk}"


# --- Pro Santé Connect (accounts/psc) ---
# Its models live with it; importing them here registers them with the accounts app.
from vigie.accounts.psc.models import PscDevice, PscSession  # noqa: E402

__all__ = [
    "Invitation",
    "LoginThrottle",
    "PscDevice",
    "PscSession",
    "Role",
    "SealedTOTPDevice",
    "TotpSeed",
    "User",
]
