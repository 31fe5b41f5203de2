"""Vault throughput: sealing 200 KB documents into the filesystem store, opening 50 MB.

Targets (issue 2): ≥ 1,000 documents/s sealed in one process; ≥ 1 GB/s opened on one core.
Sealing includes everything ingest pays in the vault: a fresh data key, AES-256-GCM over
64 KiB chunks, SHA-256 of the plaintext, the temp file, fsync, rename and directory fsync.
"""

from __future__ import annotations

import io
import json
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from vigie import vault
from vigie.vault.kek_store import Keyring
from vigie.vault.store import FilesystemBlobStore

DOC_SIZE = 200 * 1024
BIG_SIZE = 50 * 1024 * 1024
CHUNK = 64 * 1024  # the production default (VIGIE_VAULT_CHUNK_SIZE)


def bench_seal(store: FilesystemBlobStore, ring: Keyring, count: int) -> float:
    # Random bytes stand in for PDFs: AES-GCM and SHA-256 cost the same for any content.
    payload = secrets.token_bytes(DOC_SIZE)
    start = time.perf_counter()
    for i in range(count):
        vault.seal(
            f"bench-seal-{i:012d}",
            io.BytesIO(payload),
            store=store,
            keyring=ring,
            chunk_size=CHUNK,
            max_size=DOC_SIZE,
        )
    return count / (time.perf_counter() - start)


def bench_open(store: FilesystemBlobStore, ring: Keyring, rounds: int) -> float:
    big = Path(store.root) / "big-plain.tmp"
    with big.open("wb") as handle:
        for _ in range(BIG_SIZE // (1024 * 1024)):
            handle.write(secrets.token_bytes(1024 * 1024))
    with big.open("rb") as handle:
        sealed = vault.seal(
            "bench-open-000000000000",
            handle,
            store=store,
            keyring=ring,
            chunk_size=CHUNK,
            max_size=BIG_SIZE,
        )
    big.unlink()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        for chunk in vault.open(
            "bench-open-000000000000", sealed.kek_id, sealed.wrapped_key, store=store, keyring=ring
        ):
            total += len(chunk)
        elapsed = time.perf_counter() - start
        assert total == BIG_SIZE
        best = max(best, total / elapsed / 1e9)
    return best


def run(count: int = 2000, rounds: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(
        prefix="vigie-bench-vault-", dir=os.environ.get("TMPDIR")
    ) as tmp:
        root = Path(tmp)
        ring = Keyring.create(root / "keyring" / "keyring.json")
        store = FilesystemBlobStore(root / "blobs")
        seal_rate = bench_seal(store, ring, count)
        open_rate = bench_open(store, ring, rounds)
    return {
        "seal_200k_docs_per_s": round(seal_rate, 1),
        "open_50mb_gb_per_s": round(open_rate, 3),
        "count": count,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def main() -> None:
    results = run()
    print(
        f"seal 200 KB documents : {results['seal_200k_docs_per_s']:>10,.1f} docs/s  (target ≥ 1,000)"
    )
    print(f"open 50 MB document   : {results['open_50mb_gb_per_s']:>10.3f} GB/s    (target ≥ 1)")
    out = Path(__file__).parent / "results" / "vault-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
