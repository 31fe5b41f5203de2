"""`make bench`: every benchmark, one after the other."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
os.environ.setdefault("VIGIE_MODE", "test")


def main() -> None:
    from bench import fetch, intake, vault

    print("== vault ==")
    vault.main()
    print("== fetch (nginx vs Vigie) ==")
    fetch.main([])
    print("== ingest (REST and MLLP) ==")
    intake.main([])
    # Its own process: it configures Django for a throwaway home of its own.
    print("== audit verify (1,000,000 events) ==")
    subprocess.run([sys.executable, "-m", "bench.audit_verify"], check=True)


if __name__ == "__main__":
    main()
