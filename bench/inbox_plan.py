"""The results inbox's queries on a realistic trail: plans (EXPLAIN) and times.

    .venv/bin/python -m bench.inbox_plan [EVENTS]          # SQLite in a temp VIGIE_HOME
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python -m bench.inbox_plan
      (PostgreSQL: a fresh database is created and dropped, as in bench.audit_verify)

One doctor in care of 100 patients with 30 documents each (3,000 documents), a third of them
opened; EVENTS other reads (default 500,000) by 36 colleagues fill the audit trail around
them, appended through the real `append_batch`. Prints each query's plan and its median
time over 7 runs: the inbox's count and first page, and the per-patient counts of a page of
the patient list (what the header and the home page add to every page).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from bench.audit_verify import _setup, _teardown

PATIENTS, EACH, BATCH = 100, 30, 10_000


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    home = Path(tempfile.mkdtemp(prefix="vigie-bench-inbox-"))
    pg = _setup(home)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from vigie.accounts.models import Role, User
    from vigie.audit.log import append_batch
    from vigie.audit.models import AuditEvent
    from vigie.portal import inbox
    from vigie.records.models import CareRelationship, Document, Patient
    from vigie.startup import bootstrap_home

    try:
        bootstrap_home()
        call_command("migrate", verbosity=0)
        doctor = User.objects.create_user(username="dr.bench", role=Role.DOCTOR)
        now = timezone.now()
        patients = Patient.objects.bulk_create(
            Patient(
                ipp=f"IPP{n:07d}",
                family_name=f"PATIENT{n:03d}",
                given_names="Camille",
                birth_date=date(1960, 1, 1) + timedelta(days=n),
                sex="F",
            )
            for n in range(PATIENTS)
        )
        CareRelationship.objects.bulk_create(
            CareRelationship(doctor=doctor, patient=p, role="treating", valid_from=now)
            for p in patients
        )
        documents = Document.objects.bulk_create(
            Document(
                patient=p,
                kind="lab_result",
                title=f"Document {p.pk}-{i}",
                clinical_date=date(2026, 1, 1) + timedelta(days=i),
                source_system="LABO",
                content_type="application/pdf",
                size=1000,
                sha256="0" * 64,
                kek_id="kek",
                wrapped_key=b"k",
                received_at=now - timedelta(minutes=p.pk * EACH + i),
            )
            for p in patients
            for i in range(EACH)
        )
        mine = [
            AuditEvent(
                action="document.read",
                actor_id=doctor.pk,
                document_id=d.pk,
                patient_id=d.patient_id,
                outcome="success",
            )
            for d in documents[::3]
        ]
        with transaction.atomic():
            append_batch(mine)
        done = 0
        while done < events:
            size = min(BATCH, events - done)
            with transaction.atomic():
                append_batch(
                    [
                        AuditEvent(
                            action="document.read",
                            actor_id=doctor.pk + 1 + n % 36,
                            document_id=f"doc-{n:012d}",
                            patient_id=n % 5000,
                            outcome="success",
                        )
                        for n in range(done, done + size)
                    ]
                )
            done += size
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(
            f"{connection.vendor}: {len(documents):,} documents of the doctor, "
            f"{AuditEvent.objects.count():,} audit events"
        )
        queries: dict[str, Callable[[], object]] = {
            "inbox count (the header, every page)": lambda: inbox.unread_total(doctor),
            "inbox first page (50)": lambda: list(inbox.inbox_documents(doctor)[:50]),
            "unread counts of 50 patients (home page)": lambda: inbox.unread_counts(
                doctor, patients[:50]
            ),
        }
        plans = {
            "inbox count (the header, every page)": inbox.unread(doctor),
            "inbox first page (50)": inbox.inbox_documents(doctor)[:50],
        }
        for name, run in queries.items():
            times = []
            for _ in range(7):
                started = time.perf_counter()
                run()
                times.append((time.perf_counter() - started) * 1000)
            print(f"\n== {name}: median {statistics.median(times):.2f} ms")
            if name in plans:
                analyze = connection.vendor == "postgresql"
                print(plans[name].explain(analyze=analyze) if analyze else plans[name].explain())
    finally:
        _teardown(pg)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
