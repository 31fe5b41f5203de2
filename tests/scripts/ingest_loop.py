"""Ingest documents forever, printing `ACK <id> <sha256>` once each `ingest()` has returned.

The crash drill kills this process with SIGKILL at random moments; every line it printed is a
promise that the document is durable.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from datetime import date

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
    from vigie.startup import preflight

    preflight()
    django.setup()
    from vigie.records.ingest import DocumentMeta, ingest
    from vigie.records.models import Patient

    patient = Patient.objects.get(ipp=sys.argv[1])
    n = 0
    while True:
        n += 1
        content = os.urandom(48 * 1024 + n) + b"%PDF-fake " + str(n).encode()
        document = ingest(
            patient,
            DocumentMeta(
                kind="lab_result",
                title=f"Bilan {n}",
                clinical_date=date(2026, 1, 1),
                source_system="CRASH-DRILL",
            ),
            io.BytesIO(content),
        )
        sys.stdout.write(f"ACK {document.pk} {hashlib.sha256(content).hexdigest()}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
