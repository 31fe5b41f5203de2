"""Ingest: REST uploads of 200 KB PDFs, and HL7 v2 ORU messages over MLLP.

REST: `POST /api/v1/documents` (multipart: the PDF + JSON metadata) with an API key, driven
by wrk with 8 connections for `--duration` seconds, `--rounds` times; every request stores a
new document (content check, exact patient match, encryption, fsync, row + audit event in
one transaction). Target (issue 6): ≥ 717 documents/s, what Orthanc sustains ingesting
200 KB DICOM instances over REST on this class of machine (the benchmark issue compares
with Orthanc itself in the same run).

MLLP: `vigie intake mllp` on loopback, 8 client connections each sending ORU^R01 messages
without an embedded PDF (Vigie renders the lab report) one after the other, waiting for each
ACK, for `--duration` seconds. Target: ≥ 1,000 messages/s.

Vigie runs in production mode on SQLite with its own keyring. Run with `make bench` or
`python -m bench.intake [--duration 10 --rounds 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fetch import (
    RESULTS,
    Processes,
    ensure_debian_packages,
    free_port,
    make_pdf,
    parse_wrk,
    tail,
    wait_http,
)

CONNECTIONS = 8
THREADS = 2
REST_TARGET = 717.0
MLLP_TARGET = 1000.0
_MARK = "@@BENCH-INTAKE@@"

_SETUP = """
import json
from datetime import date
from vigie.intake.apikeys import create_key
from vigie.records.models import Patient
Patient.objects.create(ipp="BENCH-0001", family_name="BANC", given_names="Essai",
                       birth_date=date(1970, 1, 1))
key, text = create_key("bench-lab", source_system="LABO-BENCH")
print({mark!r} + json.dumps(dict(key=text)))
"""

_LUA = """
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        VIGIE_HOME=str(home),
        VIGIE_MODE="production",
        VIGIE_TLS="false",
        VIGIE_SSL_REDIRECT="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def _vigie(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vigie", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"vigie {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def setup(work: Path) -> tuple[dict[str, str], str]:
    """A production-mode installation with one patient and one API key."""
    env = _env(work / "home")
    _vigie(env, "keys", "init")
    _vigie(env, "migrate", "--no-input")
    out = _vigie(env, "shell", "--no-imports", "-c", _SETUP.format(mark=_MARK))
    facts = json.loads(next(x for x in out.splitlines() if x.startswith(_MARK))[len(_MARK) :])
    return env, str(facts["key"])


def multipart(pdf: bytes) -> tuple[str, bytes]:
    boundary = f"vigie-bench-{secrets.token_hex(8)}"
    metadata = {
        "patient": {"ipp": "BENCH-0001"},
        "document": {
            "kind": "lab_result",
            "title": "Bilan sanguin",
            "clinical_date": "2026-11-29",
            "author": "Laboratoire de biologie",
            "content_type": "application/pdf",
        },
    }
    parts = [
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="metadata"\r\n'
        "Content-Type: application/json\r\n\r\n".encode()
        + json.dumps(metadata).encode()
        + b"\r\n",
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bilan.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return boundary, b"".join(parts)


def documents_count(env: dict[str, str]) -> int:
    out = _vigie(
        env,
        "shell",
        "--no-imports",
        "-c",
        f"from vigie.records.models import Document; print({_MARK!r} + str(Document.objects.count()))",
    )
    return int(next(x for x in out.splitlines() if x.startswith(_MARK))[len(_MARK) :])


def bench_rest(
    work: Path, duration: int, rounds: int, workers: int, threads: int
) -> dict[str, Any]:
    env, key = setup(work / "rest")
    boundary, body = multipart(make_pdf())
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    script = work / "post.lua"
    script.write_text(_LUA.format(key=key, boundary=boundary, body=body_file), encoding="utf-8")
    procs = Processes()
    port = free_port()
    log = work / "rest-serve.log"
    try:
        argv = [sys.executable, "-m", "vigie", "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(workers), "--threads", str(threads)]
        process = procs.start(argv, log, env=env)
        wait_http(port, "/health", process, log)
        before = documents_count(env)
        runs = []
        for index in range(rounds):
            argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency"]
            argv += ["-s", str(script), f"http://127.0.0.1:{port}/api/v1/documents"]
            result = subprocess.run(
                argv, capture_output=True, text=True, check=True, timeout=duration + 60
            )
            run = parse_wrk(f"rest{index}", result.stdout)
            if run.errors:
                raise SystemExit(f"REST ingest answered errors: {run.errors}\n{tail(log)}")
            print(
                f"  rest   {run.requests_per_s:>8,.1f} docs/s  p50 {run.p50_ms:7.2f} ms"
                f"  p99 {run.p99_ms:7.2f} ms"
            )
            runs.append(run)
        stored = documents_count(env) - before
    finally:
        procs.stop_all()
    rates = [r.requests_per_s for r in runs]
    return {
        "documents_per_s": statistics.median(rates),
        "runs": rates,
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "documents_stored": stored,
        "document_bytes": len(make_pdf()),
        "connections": CONNECTIONS,
        "target": REST_TARGET,
        "target_met": statistics.median(rates) >= REST_TARGET,
    }


def oru(control_id: str) -> bytes:
    stamp = time.strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|LABO|BENCH|VIGIE|CLINIQUE|{stamp}||ORU^R01|{control_id}|P|2.5.1"
        "||||||UNICODE UTF-8",
        "PID|1||BENCH-0001^^^CLINIQUE^PI||BANC^Essai||19700101|M",
        f"OBR|1||{control_id}|58410-2^NFS^LN|||{stamp}",
        "OBX|1|NM|718-7^Hémoglobine^LN||13.9|g/dL|13.0-17.0|N|||F",
        "OBX|2|NM|6690-2^Leucocytes^LN||11.2|10*9/L|4.0-10.0|H|||F",
        "OBX|3|NM|777-3^Plaquettes^LN||250|10*9/L|150-400|N|||F",
    ]
    return b"\x0b" + "\r".join(segments).encode("utf-8") + b"\r\x1c\r"


async def _mllp_client(port: int, stop_at: float, prefix: str, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while time.monotonic() < stop_at:
            n += 1
            writer.write(oru(f"{prefix}{n}"))
            await writer.drain()
            frame = await reader.readuntil(b"\x1c\r")
            code = "AA" if b"MSA|AA" in frame else "other"
            counts[code] = counts.get(code, 0) + 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _mllp_round(port: int, duration: int, tag: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    stop_at = time.monotonic() + duration
    await asyncio.gather(
        *(_mllp_client(port, stop_at, f"{tag}-{i}-", counts) for i in range(CONNECTIONS))
    )
    return counts


def bench_mllp(work: Path, duration: int, rounds: int) -> dict[str, Any]:
    env, _key = setup(work / "mllp")
    procs = Processes()
    port = free_port()
    log = work / "mllp.log"
    try:
        argv = [sys.executable, "-m", "vigie", "intake", "mllp", "--port", str(port)]
        # The lab sends the clinic's own IPP, assigned by "CLINIQUE".
        argv += ["--local-authority", "CLINIQUE"]
        process = procs.start(argv, log, env=env)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"vigie intake mllp exited:\n{tail(log)}")
            try:
                asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"MLLP server did not listen:\n{tail(log)}") from None
                time.sleep(0.2)
        rates = []
        for index in range(rounds):
            started = time.monotonic()
            counts = asyncio.run(_mllp_round(port, duration, f"R{index}"))
            elapsed = time.monotonic() - started
            if counts.get("other"):
                raise SystemExit(f"MLLP answered non-AA ACKs: {counts}\n{tail(log)}")
            rate = counts.get("AA", 0) / elapsed
            print(f"  mllp   {rate:>8,.1f} messages/s")
            rates.append(rate)
    finally:
        procs.stop_all()
    return {
        "messages_per_s": statistics.median(rates),
        "runs": rates,
        "connections": CONNECTIONS,
        "target": MLLP_TARGET,
        "target_met": statistics.median(rates) >= MLLP_TARGET,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="granian workers")
    parser.add_argument("--threads", type=int, default=8, help="granian blocking threads")
    options = parser.parse_args(argv)
    ensure_debian_packages()
    with tempfile.TemporaryDirectory(prefix="vigie-bench-intake-") as tmp:
        work = Path(tmp)
        print("REST ingest (200 KB PDF, 8 connections):")
        rest = bench_rest(work, options.duration, options.rounds, options.workers, options.threads)
        print("MLLP (ORU^R01 without PDF, 8 connections):")
        mllp = bench_mllp(work, options.duration, options.rounds)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rest": rest,
        "mllp": mllp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(
        f"REST {rest['documents_per_s']:,.1f} docs/s (target ≥ {REST_TARGET:g}); "
        f"MLLP {mllp['messages_per_s']:,.1f} messages/s (target ≥ {MLLP_TARGET:g})"
    )
    out = RESULTS / "intake-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
