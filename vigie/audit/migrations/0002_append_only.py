"""The database refuses UPDATE and DELETE of audit events; the chain head starts at genesis."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def install(apps: Any, schema_editor: Any) -> None:
    from vigie.audit.immutability import install_triggers

    install_triggers(schema_editor.connection)
    head = apps.get_model("audit", "AuditHead")
    if not head.objects.filter(pk=1).exists():
        head.objects.create(pk=1, seq=0, hash="00" * 32, checkpoint_seq=0)


def uninstall(apps: Any, schema_editor: Any) -> None:
    from vigie.audit.immutability import drop_triggers

    drop_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
