"""What Pro Santé Connect stores: the "device" a PSC sign-in verifies, and which local
session each PSC session opened (for the provider's back-channel logout)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device


class PscDevice(Device):  # type: ignore[misc]  # django-otp ships no types
    """Marks a session as verified by Pro Santé Connect, which proved both factors itself
    (the CPS card and its PIN, or the e-CPS app).

    Deny-by-default asks django-otp whether the session's user is verified, i.e. whether
    the session names a confirmed device of that user: this device is that name. It holds
    no secret and accepts no typed code (Device.verify_token answers False), so nothing but
    a verified PSC sign-in can put it in a session.
    """

    class Meta:
        verbose_name = _("Pro Santé Connect sign-in")
        verbose_name_plural = _("Pro Santé Connect sign-ins")


class PscSession(models.Model):
    """One local session opened by a PSC sign-in, found again by the provider's session id
    (`sid`) or subject (`sub`) when its back-channel logout token arrives."""

    session_key = models.CharField(max_length=40, unique=True)
    sid = models.CharField(max_length=255, blank=True, db_index=True)
    sub = models.CharField(max_length=255, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("Pro Santé Connect session")
        verbose_name_plural = _("Pro Santé Connect sessions")

    def __str__(self) -> str:
        return f"{self.sub} ({self.created_at:%Y-%m-%d %H:%M})"
