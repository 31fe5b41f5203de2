# Per-host guard records (issue 23): each node of a group runs its own guard on its own
# firewall. Rows written before keep an empty host (not the migrating machine's name).

import vigie.guard.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("guard", "0002_probe_nonces"),
    ]

    operations = [
        migrations.CreateModel(
            name="GuardHost",
            fields=[
                (
                    "host",
                    models.CharField(
                        max_length=200, primary_key=True, serialize=False, verbose_name="host"
                    ),
                ),
                (
                    "pid",
                    models.IntegerField(blank=True, null=True, verbose_name="guard process id"),
                ),
                ("last_heartbeat", models.DateTimeField(verbose_name="last heartbeat")),
            ],
            options={
                "verbose_name": "guard host",
                "verbose_name_plural": "guard hosts",
                "ordering": ["host"],
            },
        ),
        migrations.AddField(
            model_name="driftevent",
            name="host",
            field=models.CharField(blank=True, default="", max_length=200, verbose_name="host"),
        ),
        migrations.AlterField(
            model_name="driftevent",
            name="host",
            field=models.CharField(
                blank=True,
                default=vigie.guard.models.this_host,
                max_length=200,
                verbose_name="host",
            ),
        ),
        migrations.AddField(
            model_name="proberesult",
            name="host",
            field=models.CharField(blank=True, default="", max_length=200, verbose_name="host"),
        ),
        migrations.AlterField(
            model_name="proberesult",
            name="host",
            field=models.CharField(
                blank=True,
                default=vigie.guard.models.this_host,
                max_length=200,
                verbose_name="host",
            ),
        ),
    ]
