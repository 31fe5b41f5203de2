from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "vigie.accounts"
    label = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from vigie.accounts import seeds, signals

        seeds.connect()

        user_logged_out.connect(signals.on_logged_out, dispatch_uid="vigie.accounts.logout")
