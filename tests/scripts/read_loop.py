"""Read every document again and again until told to stop; report each read's outcome.

Used during key rotation: every read must succeed, whatever key the row holds at that moment.
Prints `READ ok N` lines and, on failure, `READ fail <id> <error>`; exits 0 when the stop
file appears.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
    from vigie.startup import preflight

    preflight()
    django.setup()
    from vigie.records.content import verify
    from vigie.records.models import Document

    stop = Path(sys.argv[1])
    reads = failures = 0
    while not stop.exists():
        for document in Document.objects.order_by("pk"):
            try:
                verify(document)
                reads += 1
            except Exception as exc:  # report every kind of failure, never hide one
                failures += 1
                sys.stdout.write(f"READ fail {document.pk} {type(exc).__name__}: {exc}\n")
        sys.stdout.write(f"READ ok {reads}\n")
        sys.stdout.flush()
    sys.stdout.write(f"DONE reads={reads} failures={failures}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
