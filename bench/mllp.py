"""MLLP throughput: `vigie intake mllp` on loopback, 8 connections, ORU^R01 without a PDF.

Each of 8 client connections sends ORU^R01 messages (three NM results, no embedded PDF) one
after the other and waits for each ACK, as a lab's interface engine does, for `--duration`
seconds; on SQLite, then on PostgreSQL (a fresh database, dropped afterwards). Reported:
messages acknowledged AA per second, the server's CPU milliseconds per message (its whole
process, every thread), and a check that the documents stored equal the AAs sent (a bench
that acknowledged without storing would be fast and wrong). Target (issue 20): ≥ 1,000
messages/s on each database.

What each message becomes is the product's own conversion: the message sealed exactly as
received, its observations parsed and sealed beside it (issue 20); nothing is rendered at
intake.

    python -m bench.mllp [--duration 5 --rounds 3 --database sqlite,postgresql --processes N]

`--processes` is the server's own option (listener processes on the port); without it the
server's default (one per core). The CPU reported is the whole process tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.fetch import RESULTS, postgres_database
from bench.processes import Processes, free_port, production_env, tail, tree_cpu_seconds

CONNECTIONS = 8
MLLP_TARGET = 1000.0
_MARK = "@@BENCH-MLLP@@"

_SETUP = """
from datetime import date
from vigie.intake.models import MllpSender
from vigie.records.models import Patient
Patient.objects.create(ipp="BENCH-0001", family_name="BANC", given_names="Essai",
                       birth_date=date(1970, 1, 1))
MllpSender.objects.create(name="bench-lab", source_system="LABO-BENCH")
"""

_COUNT = """
from vigie.intake.models import ReceivedMessage
from vigie.records.models import Document
print({mark!r} + str(Document.objects.count()) + " " + str(ReceivedMessage.objects.count()))
"""


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


async def _client(port: int, stop_at: float, prefix: str, counts: dict[str, int]) -> None:
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


async def _round(port: int, duration: int, tag: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    stop_at = time.monotonic() + duration
    await asyncio.gather(
        *(_client(port, stop_at, f"{tag}-{i}-", counts) for i in range(CONNECTIONS))
    )
    return counts


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"vigie intake mllp exited:\n{tail(log)}")
        try:
            asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"MLLP server did not listen:\n{tail(log)}") from None
            time.sleep(0.2)


def bench_one(
    work: Path,
    env: dict[str, str],
    duration: int,
    rounds: int,
    name: str,
    processes: int | None = None,
) -> dict[str, Any]:
    """Rounds of 8 connections against one server; its rates, CPU and stored counts."""
    _vigie(env, "keys", "init")
    _vigie(env, "migrate", "--no-input")
    _vigie(env, "shell", "--no-imports", "-c", _SETUP)
    procs = Processes()
    port = free_port()
    log = work / f"mllp-{name}.log"
    rates: list[float] = []
    cpu: list[float] = []
    acked = 0
    try:
        argv = [sys.executable, "-m", "vigie", "intake", "mllp", "--port", str(port)]
        # The lab sends the clinic's own IPP, assigned by "CLINIQUE".
        argv += ["--local-authority", "CLINIQUE", "--sender", "bench-lab"]
        if processes is not None:
            argv += ["--processes", str(processes)]
        process = procs.start(argv, log, env=env)
        _wait_listening(port, process, log)
        for index in range(rounds):
            before = tree_cpu_seconds(process.pid)
            started = time.monotonic()
            counts = asyncio.run(_round(port, duration, f"{name}{index}"))
            elapsed = time.monotonic() - started
            spent = tree_cpu_seconds(process.pid) - before
            if counts.get("other"):
                raise SystemExit(f"MLLP answered non-AA ACKs: {counts}\n{tail(log)}")
            done = counts.get("AA", 0)
            acked += done
            rates.append(done / elapsed)
            cpu.append(1000 * spent / max(done, 1))
            print(f"  mllp {name:<10} {rates[-1]:>8,.1f} messages/s  {cpu[-1]:6.3f} ms CPU/msg")
    finally:
        procs.stop_all()
    out = _vigie(env, "shell", "--no-imports", "-c", _COUNT.format(mark=_MARK))
    line = next(x for x in out.splitlines() if x.startswith(_MARK))[len(_MARK) :]
    documents, received = (int(x) for x in line.split())
    if documents != acked or received != acked:
        raise SystemExit(f"{acked} AA sent but {documents} documents, {received} messages stored")
    rate = statistics.median(rates)
    return {
        "messages_per_s": round(rate, 1),
        "cpu_ms_per_message": round(statistics.median(cpu), 3),
        "runs": [round(r, 1) for r in rates],
        "cpu_runs": [round(c, 3) for c in cpu],
        "acknowledged": acked,
        "documents_stored": documents,
        "connections": CONNECTIONS,
        "processes": processes,
        "target": MLLP_TARGET,
        "target_met": rate >= MLLP_TARGET,
    }


def run(
    work: Path,
    env: dict[str, str],
    duration: int,
    rounds: int,
    databases: tuple[str, ...] = ("sqlite", "postgresql"),
    processes: int | None = None,
) -> dict[str, Any]:
    """{database: figures}; `env` is a production-mode environment without DATABASE_URL
    whose VIGIE_HOME each database's run replaces with a home of its own."""
    results: dict[str, Any] = {}
    for database in databases:
        home = work / f"mllp-{database}"
        own = {
            **env,
            "VIGIE_HOME": str(home),
            "VIGIE_KEYS_DIR": str(work / f"mllp-{database}-keys"),
        }
        with ExitStack() as stack:
            if database == "postgresql":
                try:
                    url, _version = stack.enter_context(postgres_database())
                except Exception as exc:  # no server: say so, keep the SQLite figure
                    print(f"  skipping MLLP on PostgreSQL: {exc}")
                    results[database] = {"skipped": str(exc)}
                    continue
                own["DATABASE_URL"] = url
            results[database] = bench_one(work, own, duration, rounds, database, processes)
    return results


def main(argv: list[str] | None = None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="sqlite,postgresql")
    parser.add_argument("--processes", type=int, default=None)
    options = parser.parse_args(argv)
    databases = tuple(d.strip() for d in options.database.split(",") if d.strip())
    with tempfile.TemporaryDirectory(prefix="vigie-bench-mllp-") as tmp:
        work = Path(tmp)
        results = run(
            work,
            production_env(work / "home"),
            options.duration,
            options.rounds,
            databases,
            options.processes,
        )
    for database, figures in results.items():
        if "messages_per_s" in figures:
            print(
                f"MLLP {database}: {figures['messages_per_s']:,.1f} messages/s, "
                f"{figures['cpu_ms_per_message']:.3f} ms CPU/message (median of "
                f"{len(figures['runs'])}; target ≥ {MLLP_TARGET:g})"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "mllp-latest.json"
    stamped = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **results}
    out.write_text(json.dumps(stamped, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
