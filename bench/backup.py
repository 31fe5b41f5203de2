"""Backup and restore: `vigie backup create` and `vigie backup restore` of N documents.

Target (issue text): 10,000 documents of 200 KB backed up in ≤ 60 s, and restored (with the
restore's own verification: every document decrypted and hashed, the audit chain checked)
in ≤ 60 s, on this machine.

A throwaway production-mode installation (SQLite, WAL, synchronous=FULL, its own keyring) gets
N real documents: 200 KB of random bytes each, sealed by `vault.seal()` (a fresh data key,
AES-256-GCM, fsync, rename; 4 threads), a row each (bulk_create, as many rows per transaction as the
batch), and one `intake.document.stored` event each, appended to the audit chain through the
real `append_batch` (what ingest's receiver does), then a signed checkpoint. The keys are
exported (`vigie keys export`, not timed). Then, each as a real `vigie` process, wall clock
from spawn to exit (the command's own "in X s" is kept beside it):

1. `vigie backup create DEST`: the database snapshot and every blob copied (N copied);
2. `vigie backup create DEST` again: incremental, nothing new (0 copied, N already there);
3. `vigie backup verify DEST --keys FILE`: every blob hashed, every document decrypted;
4. `vigie backup restore DEST --keys FILE` into a new, empty VIGIE_HOME.

Every command must exit 0 and account for exactly N documents, or the stage fails (no time
is reported for a failed command). DEST and the restored home sit on the same disk as the
installation. The OS page cache is warm (the blobs were just written; nothing is dropped).
Everything (about 3 x N x 200 KB) is removed at the end, also on failure.

    .venv/bin/python -m bench.backup [--count 10000] [--dir DIR] [--out results.json]

Runs in its own process: it configures Django for its own home (like bench.keys).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESULT_MARK = "@@BENCH-RESULT@@"
DOC_SIZE = 200 * 1024
PATIENTS = 100
_BATCH = 500
# Sealing waits on fsync most of the time: a few threads keep the disk and the cores busy.
_SEAL_THREADS = 4
_TIMEOUT = 900.0  # per command: far above any useful figure, short of hanging the run

_CREATED = re.compile(
    r"snapshot (?P<id>\S+): (?P<documents>\d+) document\(s\), (?P<pending>\d+) to reconcile, "
    r"(?P<blobs>\d+) blob\(s\) \((?P<copied>\d+) copied, [^;]*; (?P<reused>\d+) already "
    r"there\), audit up to seq (?P<seq>\d+), in (?P<seconds>[\d.]+) s"
)
_RESTORED = re.compile(
    r"restored snapshot (?P<id>\S+): (?P<documents>\d+) document\(s\), (?P<pending>\d+) to "
    r"reconcile, (?P<blobs>\d+) blob\(s\) \([^)]*\), audit chain of (?P<events>\d+) "
    r"event\(s\), in (?P<seconds>[\d.]+) s"
)


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }


def _env(home: Path, passphrase: str) -> dict[str, str]:
    env = _clean_env()
    env.update(
        VIGIE_HOME=str(home),
        # Beside the throwaway home: production's default is the host's /etc/vigie/keys.
        VIGIE_KEYS_DIR=str(home.with_name(f"{home.name}-keys")),
        VIGIE_MODE="production",
        VIGIE_KEYS_PASSPHRASE=passphrase,
        DJANGO_SETTINGS_MODULE="vigie.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def _say(message: str) -> None:
    # stdout: bench.run echoes these lines while the stage runs.
    print(message, flush=True)


def _vigie(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run `vigie ARGS` to completion: (wall-clock seconds from spawn to exit, stdout).
    Anything but exit 0 raises, with the command's output."""
    argv = [sys.executable, "-m", "vigie", *args]
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=_TIMEOUT,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"vigie {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return elapsed, done.stdout


def _parse(pattern: re.Pattern[str], output: str, what: str) -> dict[str, str]:
    found = pattern.search(output)
    if found is None:
        raise RuntimeError(f"no summary line in the output of {what}:\n{output[-2000:]}")
    return found.groupdict()


def _expect(what: str, actual: object, expected: object) -> None:
    if actual != expected:
        raise RuntimeError(f"{what}: {actual}, expected {expected}")


class _Progress:
    """A rich bar on a terminal; otherwise a line every tenth (bench.run echoes stdout)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.next_line = label, total, 0
        self.started = time.perf_counter()
        self.bar: Any = None
        if sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
        elif done >= self.next_line or done == self.total:
            elapsed = time.perf_counter() - self.started
            _say(f"{self.label}: {done:,}/{self.total:,} ({elapsed:.1f} s)")
            self.next_line = done + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def seed(count: int) -> dict[str, Any]:
    """The installation in this process's VIGIE_HOME: N sealed documents, rows, events."""
    import io
    from datetime import date

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from vigie import vault
    from vigie.audit import checkpoints
    from vigie.audit.log import append_batch
    from vigie.audit.models import AuditEvent
    from vigie.records.models import Document, DocumentKind, Patient
    from vigie.startup import bootstrap_home

    bootstrap_home()  # what `vigie keys init` does: secret key, keyring, signing key
    call_command("migrate", verbosity=0)
    ring = vault.get_keyring()
    store = vault.get_store()
    Patient.objects.bulk_create(
        Patient(
            ipp=f"BENCH-BACKUP-{n:05d}",
            family_name="BANC",
            given_names=f"Essai {n}",
            birth_date=date(1950 + n % 50, 1 + n % 12, 1 + n % 28),
        )
        for n in range(PATIENTS)
    )
    patients = list(Patient.objects.order_by("pk"))  # with their keys, on every engine
    kinds = list(DocumentKind.values)

    started = time.perf_counter()
    progress = _Progress("seeding documents", count)
    pool = ThreadPoolExecutor(max_workers=_SEAL_THREADS)
    done = 0

    def seal_one(n: int) -> vault.SealedDocument:
        return vault.seal(
            f"bench-backup-{n:012d}",
            io.BytesIO(secrets.token_bytes(DOC_SIZE)),
            store=store,
            keyring=ring,
        )

    try:
        while done < count:
            rows, events = [], []
            numbers = range(done, min(done + _BATCH, count))
            for n, sealed in zip(numbers, pool.map(seal_one, numbers), strict=True):
                doc_id = f"bench-backup-{n:012d}"
                patient = patients[n % len(patients)]
                doc = Document(
                    id=doc_id,
                    patient=patient,
                    kind=kinds[n % len(kinds)],
                    title=f"Document {n}",
                    clinical_date=date(2026, 1 + n % 12, 1 + n % 28),
                    source_system="bench",
                    content_type="application/pdf",
                    size=sealed.size,
                    sha256=sealed.sha256,
                    kek_id=sealed.kek_id,
                    wrapped_key=sealed.wrapped_key,
                )
                rows.append(doc)
                # The event ingest's receiver records for each stored document.
                events.append(
                    AuditEvent(
                        action="intake.document.stored",
                        outcome="success",
                        document_id=doc_id,
                        patient_id=patient.pk,
                        patient_ipp=patient.ipp,
                        extra={"source_system": "bench", "kind": doc.kind, "size": doc.size},
                    )
                )
            with transaction.atomic():
                Document.objects.bulk_create(rows)
                append_batch(events)
            done += len(rows)
            progress.update(done)
    finally:
        pool.shutdown(cancel_futures=True)
        progress.close()
    checkpoints.write_checkpoint(force=True)
    seeded = time.perf_counter() - started
    on_disk = sum(f.stat().st_size for f in Path(store.root).rglob("*") if f.is_file())
    documents = Document.objects.count()
    _expect("documents seeded", documents, count)
    connection.close()
    return {"seed_seconds": round(seeded, 2), "blob_bytes": on_disk, "documents": documents}


def measure(count: int, work: Path) -> dict[str, Any]:
    home, restored, dest = work / "home", work / "restored", work / "dest"
    keys_file = work / "keys.export"
    passphrase = secrets.token_urlsafe(24)
    env = _env(home, passphrase)
    os.environ.update(env)
    seeded = seed(count)
    _say(
        f"seeded {count:,} documents ({seeded['blob_bytes'] / 1e9:.2f} GB of blobs) "
        f"in {seeded['seed_seconds']} s"
    )

    _vigie(env, "keys", "export", str(keys_file))

    wall, out = _vigie(env, "backup", "create", str(dest))
    first = _parse(_CREATED, out, "backup create")
    _expect("backup create: documents", int(first["documents"]), count)
    _expect("backup create: blobs copied", int(first["copied"]), count)
    create = {"wall_s": round(wall, 2), "reported_s": float(first["seconds"])}
    _say(f"backup create: {wall:.1f} s wall ({first['seconds']} s reported)")

    wall, out = _vigie(env, "backup", "create", str(dest))
    second = _parse(_CREATED, out, "backup create (incremental)")
    _expect("incremental backup: documents", int(second["documents"]), count)
    _expect("incremental backup: blobs copied", int(second["copied"]), 0)
    _expect("incremental backup: blobs already there", int(second["reused"]), count)
    incremental = {"wall_s": round(wall, 2), "reported_s": float(second["seconds"])}
    _say(f"backup create, incremental: {wall:.1f} s wall ({second['seconds']} s reported)")

    wall, out = _vigie(env, "backup", "verify", str(dest), "--keys", str(keys_file), "--json")
    report = json.loads(out[out.index("{") :])
    _expect("backup verify: ok", report.get("ok"), True)
    _expect("backup verify: snapshot", report.get("snapshot_id"), second["id"])
    _expect("backup verify: documents", report.get("documents"), count)
    _expect("backup verify: blobs", report.get("blobs"), count)
    verify = {"wall_s": round(wall, 2), "reported_s": round(float(report["seconds"]), 2)}
    _say(f"backup verify: {wall:.1f} s wall ({report['seconds']:.1f} s reported)")

    wall, out = _vigie(
        _env(restored, passphrase), "backup", "restore", str(dest), "--keys", str(keys_file)
    )
    back = _parse(_RESTORED, out, "backup restore")
    if "verified:" not in out:
        raise RuntimeError(f"backup restore did not say it verified:\n{out[-2000:]}")
    _expect("backup restore: snapshot", back["id"], second["id"])
    _expect("backup restore: documents", int(back["documents"]), count)
    _expect("backup restore: blobs", int(back["blobs"]), count)
    if (restored / "RESTORING").exists():
        raise RuntimeError("the restored home is still marked RESTORING")
    restore = {
        "wall_s": round(wall, 2),
        "reported_s": float(back["seconds"]),
        "audit_events": int(back["events"]),
    }
    _say(f"backup restore: {wall:.1f} s wall ({back['seconds']} s reported)")

    return {
        "engine": "sqlite",
        "documents": count,
        "document_bytes": DOC_SIZE,
        "audit_seq": int(first["seq"]),
        **seeded,
        "create": create,
        "incremental": incremental,
        "verify": verify,
        "restore": restore,
        "target_s": 60.0,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="backup create / restore of N documents")
    parser.add_argument("--count", type=int, default=10_000, help="documents of 200 KB")
    parser.add_argument("--dir", type=Path, help="where the homes and DEST go (a temp dir)")
    parser.add_argument("--out", type=Path, help="also write the result here (JSON)")
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-backup-", dir=options.dir))
    try:
        report = measure(options.count, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"backup of {report['documents']:,} documents: create {report['create']['wall_s']} s, "
        f"incremental {report['incremental']['wall_s']} s, verify {report['verify']['wall_s']} s,"
        f" restore {report['restore']['wall_s']} s",
        file=sys.stderr,
    )
    text = json.dumps(report, indent=2)
    if options.out:
        options.out.write_text(text + "\n", encoding="utf-8")
    # The line bench.run reads.
    print(RESULT_MARK + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
