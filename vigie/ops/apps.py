from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations: `vigie check`, the self-check of a running installation."""

    name = "vigie.ops"
    label = "ops"
    # Not translated: the app has no models, so no page ever shows this name.
    verbose_name = "Operations"
