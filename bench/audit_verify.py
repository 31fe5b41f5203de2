"""Audit verify throughput: build a log of N events (default 1,000,000) with correct hashes
and signed checkpoints, then time `verify()` over all of it.

Target (issue 3): 1,000,000 events verified in ≤ 5 s.

    .venv/bin/python -m bench.audit_verify [N] [--jobs J]       # SQLite in a temp VIGIE_HOME
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python -m bench.audit_verify
      (PostgreSQL: a fresh database `vigie_bench_<random>` is created and dropped)

Events are appended through the real `append_batch` (the code `record()` uses), 10,000 per
transaction; one event in ten carries an `extra` object, like a read's access basis.
`verify()` is timed with 1 process and with one per CPU, or only with `--jobs J`. The last
line of output is the report for `bench.run` (after RESULT_MARK); the home is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BATCH = 10_000
RESULT_MARK = "@@BENCH-RESULT@@"


def _setup(home: Path) -> str | None:
    os.environ.update(
        VIGIE_MODE="test", VIGIE_HOME=str(home), DJANGO_SETTINGS_MODULE="vigie.settings"
    )
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        os.environ.pop("DATABASE_URL", None)
        return None
    import psycopg

    parts = urlsplit(url)
    name = f"vigie_bench_{secrets.token_hex(4)}"
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    return admin + "|" + name


def _teardown(pg: str | None) -> None:
    if pg is None:
        return
    import psycopg
    from django.db import connection

    connection.close()
    admin, name = pg.split("|")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description="audit verify throughput")
    parser.add_argument("count", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, help="time verify() with this many processes only")
    options = parser.parse_args()
    count: int = options.count
    home = Path(tempfile.mkdtemp(prefix="vigie-bench-audit-"))
    pg = _setup(home)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from vigie.audit import checkpoints
    from vigie.audit.log import append_batch
    from vigie.audit.models import AuditEvent
    from vigie.audit.verify import verify
    from vigie.startup import bootstrap_home

    try:
        bootstrap_home()
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        done = 0
        while done < count:
            size = min(BATCH, count - done)
            events = [
                AuditEvent(
                    action="document.read" if n % 20 else "document.download",
                    actor_id=1000 + n % 37,
                    actor_username=f"dr.user{n % 37}",
                    actor_role="doctor",
                    actor_display=f"Docteur Numéro {n % 37}",
                    patient_id=n % 5000,
                    patient_ipp=f"IPP{n % 5000:07d}",
                    document_id=f"doc-{n:012d}",
                    outcome="success",
                    source_ip="192.0.2.10",
                    user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
                    request_id=f"{n:032x}",
                    reason="",
                    extra={"basis": "care", "basis_id": n % 900} if n % 10 == 0 else {},
                )
                for n in range(done, done + size)
            ]
            with transaction.atomic():
                append_batch(events)
            done += size
            if done % 100_000 == 0 or done == count:
                checkpoints.write_checkpoint(force=True)
        built = time.perf_counter() - started
        print(f"built {count:,} events in {built:.1f} s ({connection.vendor})", flush=True)

        timings: dict[str, float] = {}
        for jobs in [options.jobs] if options.jobs else sorted({1, os.cpu_count() or 1}):
            connection.close()
            started = time.perf_counter()
            result = verify(jobs=jobs)
            timings[f"jobs={jobs}"] = round(time.perf_counter() - started, 2)
            assert result.ok, result.problems
            assert result.checked == count
            print(f"verify jobs={jobs}: {timings[f'jobs={jobs}']} s", flush=True)
        best = min(timings.values())
        report = {
            "engine": connection.vendor,
            "events": count,
            "checkpoints": result.checkpoints,
            "verify_seconds": timings,
            "events_per_second_best": round(count / best),
            "target_seconds_for_1m": 5.0,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(report, indent=2))
        out = Path(__file__).parent / "results" / f"audit-verify-{connection.vendor}-latest.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(RESULT_MARK + json.dumps(report), flush=True)
    finally:
        _teardown(pg)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
