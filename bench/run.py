"""`make bench`: every benchmark, one after the other. A later issue adds ingest."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
os.environ.setdefault("VIGIE_MODE", "test")


def main() -> None:
    from bench import fetch, vault

    print("== vault ==")
    vault.main()
    print("== fetch (nginx vs Vigie) ==")
    fetch.main([])


if __name__ == "__main__":
    main()
