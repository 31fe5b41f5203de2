from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "vigie.audit"
    label = "audit"
    verbose_name = _("Audit trail")

    def ready(self) -> None:
        from vigie.audit.receivers import document_stored
        from vigie.records.signals import document_ingested

        document_ingested.connect(document_stored, dispatch_uid="vigie.audit.document_stored")
