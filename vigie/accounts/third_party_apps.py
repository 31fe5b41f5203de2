"""Third-party apps under names a French administrator reads.

The admin shows app names in its permission lists, its history and its content types:
"Otp_Totp" and "Csp" there are codes. Kept apart from apps.py, where Django looks for the
accounts app's one configuration.

The models' names too (the permission lists say "otp_totp | TOTP device | ..."): django-otp
gives them as plain strings ("TOTP device", "static token") or lets Django derive one from
the class name ("static device"), never through gettext, so no catalog entry of ours could
translate them. Each app's ready() therefore replaces them by lazy translations of the SAME
English words: migrations read a model's options from its class Meta (`original_attrs`), so
no migration changes, and the English UI reads what it read before. csp has no models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from csp.apps import CspConfig as CspDefaultConfig
from django.apps import AppConfig
from django.db.models import Model
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.apps import DefaultConfig as StaticDefaultConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TotpDefaultConfig

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class OtpConfig(AppConfig):
    name = "django_otp"
    verbose_name = _("Second factor")


def _name_model(model: type[Model], singular: StrOrPromise, plural: StrOrPromise) -> None:
    model._meta.verbose_name = singular
    model._meta.verbose_name_plural = plural


class OtpTotpConfig(TotpDefaultConfig):  # type: ignore[misc]  # django-otp has no type hints
    verbose_name = _("Authenticator apps")

    def ready(self) -> None:
        super().ready()
        _name_model(self.get_model("TOTPDevice"), _("TOTP device"), _("TOTP devices"))


class OtpStaticConfig(StaticDefaultConfig):  # type: ignore[misc]  # django-otp has no type hints
    verbose_name = _("Recovery codes")

    def ready(self) -> None:
        super().ready()
        _name_model(self.get_model("StaticDevice"), _("static device"), _("static devices"))
        _name_model(self.get_model("StaticToken"), _("static token"), _("static tokens"))


class CspConfig(CspDefaultConfig):
    verbose_name = _("Content security policy")
