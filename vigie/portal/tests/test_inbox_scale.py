"""The inbox for a doctor with thousands of documents: a fixed number of queries, and the
read state looked up through the audit index (`audit_actor_document_idx`) on both databases.

No timings here (those belong to bench/); what is asserted is what makes it fast.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from vigie.audit import tags
from vigie.audit.log import record, together
from vigie.portal import inbox
from vigie.portal.testing import relate
from vigie.records.models import Document, DocumentKind
from vigie.records.testing import make_doctor, make_patient

pytestmark = pytest.mark.django_db

PATIENTS = 60
DOCUMENTS_EACH = 50  # 3,000 documents


def fill(doctor, patients: int, each: int, *, opened_share: int = 3) -> list[Document]:
    """`patients` patients in the doctor's care with `each` documents apiece (rows only: the
    inbox never opens a blob), every `opened_share`-th document read by the doctor, and as
    many reads by a colleague, so the audit table is not the doctor's alone."""
    colleague = make_doctor("dr.colleague")
    kinds = list(DocumentKind.values)
    now = timezone.now()
    rows = []
    for p in range(patients):
        patient = make_patient(f"PATIENT{p:03d}")
        relate(doctor, patient)
        relate(colleague, patient)
        rows += [
            Document(
                patient=patient,
                kind=kinds[i % len(kinds)],
                title=f"Document {p}-{i}",
                clinical_date=date(2026, 1, 1) + timedelta(days=i),
                source_system="LABO",
                content_type="application/pdf",
                size=1000,
                sha256="0" * 64,
                kek_id="kek",
                wrapped_key=b"k",
                received_at=now - timedelta(minutes=p * each + i),
            )
            for i in range(each)
        ]
    documents = Document.objects.bulk_create(rows, batch_size=500)
    with transaction.atomic(), together():
        for n, document in enumerate(documents):
            if n % opened_share == 0:
                record(tags.DOCUMENT_READ, actor=doctor, document=document)
            record(tags.DOCUMENT_READ, actor=colleague, document=document)
    return documents


def inbox_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("portal:inbox"))
        assert response.status_code == 200
    # The inbox's own queries: what the middleware does now and then (the session's idle
    # clock, the guard's decoy list) is not the inbox's and does not grow with it.
    return sum('FROM "records_document"' in q["sql"] for q in captured.captured_queries)


def test_the_inbox_needs_as_many_queries_for_thousands_of_documents_as_for_ten(
    doctor, signed_in
) -> None:
    fill(doctor, patients=2, each=5)
    client = signed_in(doctor)
    client.get(reverse("portal:inbox"))  # the session's first page writes what it keeps
    few = inbox_queries(client)
    fill(doctor, patients=PATIENTS, each=DOCUMENTS_EACH)
    # Every third document of each fill was opened: 4 of the first 10, 1,000 of 3,000.
    assert inbox.unread_total(doctor) == (10 - 4) + (PATIENTS * DOCUMENTS_EACH - 1000)
    many = inbox_queries(client)
    assert many == few
    # The home page's per-patient counts too: one query for the page, whatever its size.
    with CaptureQueriesContext(connection) as home:
        assert client.get(reverse("portal:home")).status_code == 200
    counts = [q for q in home.captured_queries if 'COUNT("records_document"."id")' in q["sql"]]
    assert len(counts) == 1


def test_the_read_state_is_looked_up_through_the_audit_index(doctor) -> None:
    """The "opened?" test matches the index's columns, so the planner can seek it. SQLite's
    planner uses it at any size. PostgreSQL's prefers a hash join over a table this small
    (its choice on a real trail: bench/inbox_plan.py); with the whole-table joins priced out, it
    shows that the index answers the lookup."""
    fill(doctor, patients=20, each=20)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_hashjoin = off")
            cursor.execute("SET LOCAL enable_mergejoin = off")
            # Nor one scan of the doctor's whole trail kept aside and filtered per document:
            # after the suite's earlier tests the table's pages (dead rows rolled back) made
            # that look cheaper than a seek per document.
            cursor.execute("SET LOCAL enable_material = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
        plan = inbox.unread(doctor).explain()
    # The seek uses both columns, not only the index's leading actor_id.
    seek = [line for line in plan.splitlines() if "audit_actor_document_idx" in line]
    assert seek, plan
    if connection.vendor == "postgresql":
        lines = plan.splitlines()
        condition = lines[lines.index(seek[0]) + 1]
        assert "actor_id" in condition, plan
        assert "document_id" in condition, plan
    else:
        assert "document_id=?" in seek[0], plan
