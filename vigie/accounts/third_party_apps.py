"""Third-party apps under names a French administrator reads.

The admin shows app names in its permission lists, its history and its content types:
"Otp_Totp" and "Csp" there are codes. Only the app names are set here; the models' own
names belong to those apps' migrations, which are not ours to change. Kept apart from
apps.py, where Django looks for the accounts app's one configuration.
"""

from __future__ import annotations

from csp.apps import CspConfig as CspDefaultConfig
from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.apps import DefaultConfig as StaticDefaultConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TotpDefaultConfig


class OtpConfig(AppConfig):
    name = "django_otp"
    verbose_name = _("Second factor")


class OtpTotpConfig(TotpDefaultConfig):  # type: ignore[misc]  # django-otp has no type hints
    verbose_name = _("Authenticator apps")


class OtpStaticConfig(StaticDefaultConfig):  # type: ignore[misc]  # django-otp has no type hints
    verbose_name = _("Recovery codes")


class CspConfig(CspDefaultConfig):
    verbose_name = _("Content security policy")
