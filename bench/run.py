"""`make bench`: every benchmark, one after the other. Later issues add fetch and ingest."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
os.environ.setdefault("VIGIE_MODE", "test")


def main() -> None:
    from bench import vault

    print("== vault ==")
    vault.main()


if __name__ == "__main__":
    main()
