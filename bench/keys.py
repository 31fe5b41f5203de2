"""Key rotation rate: data keys re-wrapped per second by `vigie keys rotate`.

A throwaway production-mode home (SQLite, WAL, synchronous=FULL, its own keyring) gets N
documents whose data keys were wrapped by the vault's keyring; `records.keys.rotate()` then
adds a new key-encryption key and re-wraps every data key (unwrap, wrap, conditional UPDATE
per row, as the command does). A sample of the documents is sealed for real (tiny blobs):
after the rotation they must open under the new key with the exact bytes, so the figure is
for real re-wrapping, not for rows that merely changed.

    .venv/bin/python -m bench.keys [--count 10000] [--out results.json]

Runs in its own process: it configures Django for its own home (like bench.audit_verify).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "@@BENCH-RESULT@@"
SAMPLE = 20  # documents sealed for real, opened after the rotation
_BATCH = 5_000


def _setup(home: Path) -> None:
    for name in [k for k in os.environ if k.startswith("VIGIE_") or k == "DATABASE_URL"]:
        del os.environ[name]
    os.environ.update(
        VIGIE_MODE="production",
        VIGIE_HOME=str(home),
        # Beside the throwaway home: production's default is the host's /etc/vigie/keys.
        VIGIE_KEYS_DIR=str(home.with_name(f"{home.name}-keys")),
        DJANGO_SETTINGS_MODULE="vigie.settings",
    )


def measure(count: int) -> dict[str, Any]:
    import io
    from datetime import date

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from vigie import vault
    from vigie.records import keys
    from vigie.records.models import Document, DocumentKind, Patient
    from vigie.startup import bootstrap_home
    from vigie.vault.envelope import new_data_key

    bootstrap_home()  # what `vigie keys init` does: secret key, keyring, signing key
    call_command("migrate", verbosity=0)
    ring = vault.get_keyring()
    old_kek = ring.active_id
    patient = Patient.objects.create(
        ipp="BENCH-KEYS", family_name="BANC", given_names="Essai", birth_date=date(1970, 1, 1)
    )

    def row(doc_id: str, kek_id: str, wrapped: bytes, size: int, sha: str) -> Document:
        return Document(
            id=doc_id,
            patient=patient,
            kind=DocumentKind.LAB_RESULT,
            title="Bilan",
            clinical_date=date(2026, 1, 1),
            source_system="bench",
            content_type="application/pdf",
            size=size,
            sha256=sha,
            kek_id=kek_id,
            wrapped_key=wrapped,
        )

    started = time.perf_counter()
    samples: dict[str, bytes] = {}
    sealed_rows = []
    for n in range(min(SAMPLE, count)):
        doc_id = f"bench-keys-sealed-{n:08d}"
        content = secrets.token_bytes(512)
        sealed = vault.seal(doc_id, io.BytesIO(content), keyring=ring)
        samples[doc_id] = content
        sealed_rows.append(
            row(doc_id, sealed.kek_id, sealed.wrapped_key, sealed.size, sealed.sha256)
        )
    Document.objects.bulk_create(sealed_rows)
    done = len(sealed_rows)
    while done < count:
        rows = []
        for n in range(done, min(done + _BATCH, count)):
            doc_id = f"bench-keys-{n:012d}"
            # A real data key wrapped by the keyring, exactly as seal() does; only the blob
            # (never read by a rotation) is left out, to build 10,000s of rows in seconds.
            kek_id, wrapped = ring.wrap(new_data_key(), doc_id)
            rows.append(row(doc_id, kek_id, wrapped, 0, "0" * 64))
        with transaction.atomic():
            Document.objects.bulk_create(rows)
        done += len(rows)
    built = time.perf_counter() - started

    started = time.perf_counter()
    result = keys.rotate(ring)
    elapsed = time.perf_counter() - started

    assert result.rewrapped == count, (result.rewrapped, count)
    assert keys.key_usage() == {result.new_kek_id: count}, keys.key_usage()
    for doc_id, content in samples.items():
        doc = Document.objects.get(pk=doc_id)
        with vault.open(doc_id, doc.kek_id, bytes(doc.wrapped_key), keyring=ring) as stream:
            assert b"".join(stream) == content, doc_id
    vendor = connection.vendor
    connection.close()
    return {
        "engine": vendor,
        "data_keys": count,
        "sealed_and_reopened": len(samples),
        "old_kek": old_kek,
        "new_kek": result.new_kek_id,
        "build_seconds": round(built, 2),
        "rotate_seconds": round(elapsed, 3),
        "data_keys_per_second": round(count / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="key rotation rate (data keys re-wrapped/s)")
    parser.add_argument("--count", type=int, default=10_000, help="data keys to re-wrap")
    parser.add_argument("--out", type=Path, help="also write the result here (JSON)")
    options = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="vigie-bench-keys-"))
    try:
        _setup(home)
        report = measure(options.count)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(home.with_name(f"{home.name}-keys"), ignore_errors=True)
    print(
        f"rotate: {report['data_keys']:,} data keys re-wrapped in {report['rotate_seconds']} s"
        f" = {report['data_keys_per_second']:,.0f}/s ({report['engine']})",
        file=sys.stderr,
    )
    text = json.dumps(report, indent=2)
    if options.out:
        options.out.write_text(text + "\n", encoding="utf-8")
    # The line bench.run reads (stdout is otherwise quiet).
    print(RESULT_MARK + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
