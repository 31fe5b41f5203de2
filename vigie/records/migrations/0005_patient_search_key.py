from django.db import migrations, models

from vigie.lib.folding import fold


def fill_search_keys(apps, schema_editor):
    # Rows written before the column existed: the same key that Patient.save() computes.
    Patient = apps.get_model("records", "Patient")
    for patient in Patient.objects.only("pk", "family_name", "given_names").iterator():
        key = fold(f"{patient.family_name} {patient.given_names}")[:301]
        Patient.objects.filter(pk=patient.pk).update(search_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0004_links_without_reverse_accessors"),
    ]

    operations = [
        migrations.AddField(
            model_name="patient",
            name="search_key",
            field=models.CharField(blank=True, default="", editable=False, max_length=301),
        ),
        migrations.RunPython(fill_search_keys, migrations.RunPython.noop, elidable=True),
    ]
