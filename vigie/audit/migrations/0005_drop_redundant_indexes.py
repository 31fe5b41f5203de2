"""Drop the single-column indexes on actor_id and patient_id.

Each is the leading column of a composite index (audit_actor_time_idx, audit_patient_time_idx,
audit_actor_document_idx), which answers the same lookups. Why now: on PostgreSQL the planner
took the narrower index for the inbox's "opened?" test instead of the (actor_id, document_id)
one meant for it. An index less is a write less per append in principle; bench.readcpu
measured no difference per commit (docs/bench.md).

Only the indexes are dropped (raw SQL, same names on both databases): Django's SQLite schema
editor would otherwise rebuild the table for an AlterField, and a rebuilt table loses the
append-only triggers of migration 0002.
"""

from django.db import migrations, models

_INDEXES = {
    "actor_id": "audit_auditevent_actor_id_270bb4b7",
    "patient_id": "audit_auditevent_patient_id_82c45eaf",
}


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_actor_document_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {name}",
                    reverse_sql=f"CREATE INDEX {name} ON audit_auditevent ({column})",
                )
                for column, name in _INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="actor_id",
                    field=models.BigIntegerField(blank=True, null=True, verbose_name="actor id"),
                ),
                migrations.AlterField(
                    model_name="auditevent",
                    name="patient_id",
                    field=models.BigIntegerField(blank=True, null=True, verbose_name="patient id"),
                ),
            ],
        ),
    ]
