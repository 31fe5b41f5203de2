from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GuardConfig(AppConfig):
    name = "vigie.guard"
    label = "guard"
    verbose_name = _("Exposure guard")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from vigie.guard import receivers  # noqa: F401  (connects the canary tripwire)
