"""Ingest: Vigie's REST intake vs Orthanc's `POST /instances` (200 KB), and HL7 v2 over MLLP.

REST: `POST /api/v1/documents` (multipart: the PDF + JSON metadata) with an API key; every
request stores a new document (content check, exact patient match, encryption, fsync, row +
audit event in one transaction). Orthanc: `POST /instances` of the same PDF wrapped as a DICOM
Encapsulated PDF instance, each request with a new SOPInstanceUID (the wrk script fills a
fixed-width placeholder UID with a per-run, per-thread counter), so Orthanc parses, indexes
and writes a new instance every time. Both driven by wrk, 8 connections, `--duration` seconds,
`--rounds` interleaved rounds (Vigie, Orthanc, Vigie, Orthanc...). Targets (issue 19,
bench/targets.py): Vigie ≥ 0.5 x Orthanc, ≤ 5 ms of server CPU per document. `--profile`: py-spy on a Vigie worker during an extra REST run,
bench/results/ingest-flame.svg and the hottest frames.

MLLP: see bench/mllp.py (8 connections, ORU^R01 without an embedded PDF, SQLite then
PostgreSQL, messages/s and CPU per message). Target: ≥ 1,000 messages/s on each.

Vigie runs in production mode on SQLite with its own keyring. Run with `make bench`
(bench.run calls `run_ingest`) or `python -m bench.intake [--duration 5 --rounds 3 --profile]`.
"""

from __future__ import annotations

import argparse
import http.client
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

from bench import targets as goal
from bench.fetch import (
    RESULTS,
    THREADS,
    Run,
    cpu_text,
    ensure_debian_packages,
    median_cpu,
    parse_wrk,
    profile_under_load,
    with_cpu,
    wrk_argv,
)
from bench.mllp import MLLP_TARGET
from bench.mllp import run as run_mllp
from bench.orthanc import HTTP_THREADS, start_orthanc, wrap_pdf_as_dicom
from bench.payload import make_pdf
from bench.previous import compare, last_run
from bench.processes import (
    Processes,
    free_port,
    production_env,
    tail,
    tree_cpu_seconds,
    wait_http,
)

CONNECTIONS = 8
_MARK = "@@BENCH-INTAKE@@"

_SETUP = """
import json
from datetime import date
from vigie.intake.apikeys import create_key
from vigie.intake.models import MllpSender
from vigie.records.models import Patient
Patient.objects.create(ipp="BENCH-0001", family_name="BANC", given_names="Essai",
                       birth_date=date(1970, 1, 1))
key, text = create_key("bench-lab", source_system="LABO-BENCH")
MllpSender.objects.create(name="bench-lab", source_system="LABO-BENCH")
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

# Orthanc: one pre-made instance whose SOPInstanceUID (in the file meta and in the dataset) is
# a fixed-width placeholder; every request replaces it with <prefix>1<run 8 digits>.1<wrk
# thread 2 digits><counter 9 digits> — same length, so no DICOM length field changes.
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_UID_PLACEHOLDER = _UID_PREFIX + "1" + "0" * 8 + ".1" + "0" * 11


def _uid(run: int, thread: int, counter: int) -> bytes:
    return f"{_UID_PREFIX}1{run:08d}.1{thread:02d}{counter:09d}".encode()


_ORTHANC_LUA = """
wrk.method = "POST"
wrk.headers["Authorization"] = "@AUTH@"
wrk.headers["Content-Type"] = "application/dicom"
local f = io.open("@PATH@", "rb")
local template = f:read("*all")
f:close()
local pieces = {}
local start = 1
while true do
  local i, j = string.find(template, "@PLACEHOLDER@", start, true)
  if not i then break end
  table.insert(pieces, string.sub(template, start, i - 1))
  start = j + 1
end
table.insert(pieces, string.sub(template, start))

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local run = 0
local counter = 0
function init(args)
  run = tonumber(args[1]) or 0
end

function request()
  counter = counter + 1
  local uid = string.format("@PREFIX@1%08d.1%02d%09d", run, tid, counter)
  return wrk.format(nil, nil, nil, table.concat(pieces, uid))
end
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


def setup(work: Path) -> tuple[dict[str, str], str]:
    """A production-mode installation with one patient and one API key."""
    env = production_env(work / "home")
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


def _wrk_post(name: str, script: Path, url: str, duration: int, server_pid: int, *args: str) -> Run:
    """One wrk run of uploads, and the server tree's CPU per document."""
    argv = [*wrk_argv(CONNECTIONS, duration), "--latency", "-s", str(script), url]
    if args:
        argv += ["--", *args]
    before = tree_cpu_seconds(server_pid)
    result = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    run = with_cpu(
        parse_wrk(name, result.stdout, CONNECTIONS), tree_cpu_seconds(server_pid) - before
    )
    print(
        f"  {name:<8} {run.requests_per_s:>8,.1f} docs/s  p50 {run.p50_ms:8.2f} ms"
        f"  p99 {run.p99_ms:8.2f} ms{cpu_text(run)}" + (f"  [{run.errors}]" if run.errors else "")
    )
    return run


def _post_once(port: int, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    content = response.read()
    conn.close()
    return response.status, content


def _summary(runs: list[Run]) -> dict[str, Any]:
    return {
        "documents_per_s": round(statistics.median(r.requests_per_s for r in runs), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in runs), 2),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 2),
        "cpu_ms_per_document": median_cpu(runs),
        "errors": [r.errors for r in runs if r.errors],
        "runs": [r.__dict__ for r in runs],
    }


def _error_lines(root: Path) -> list[str]:
    """Orthanc's error lines ("E" first in its log format), the last few."""
    lines: list[str] = []
    for log in sorted(root.glob("*.log*")):
        text = log.read_text(encoding="utf-8", errors="replace")
        lines += [line for line in text.splitlines() if line.startswith("E")]
    return lines[-5:]


def bench_rest_vs_orthanc(
    work: Path, duration: int, rounds: int, workers: int, threads: int, with_profile: bool
) -> dict[str, Any]:
    """Vigie REST intake and Orthanc `POST /instances`, 8 connections each, interleaved rounds.

    Every request is a new document on both sides: Vigie stores each upload as a new document;
    Orthanc gets a new SOPInstanceUID in every request (the wrk script writes a per-run,
    per-thread counter into a fixed-width placeholder UID of one pre-made instance), so it
    parses, indexes and writes a new instance each time — no "AlreadyStored" shortcut, and no
    delete-then-store either, which an overwrite of the same UID would add.
    """
    env, key = setup(work / "rest")
    pdf = make_pdf()
    boundary, body = multipart(pdf)
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    vigie_script = work / "post.lua"
    vigie_script.write_text(
        _LUA.format(key=key, boundary=boundary, body=body_file), encoding="utf-8"
    )
    procs = Processes()
    port = free_port()
    log = work / "rest-serve.log"
    hot: dict[str, list[dict[str, Any]]] = {}
    runs: dict[str, list[Run]] = {"vigie": [], "orthanc": []}
    try:
        orthanc = start_orthanc(work, procs, http_port=free_port(), dicom_port=free_port(), pdf=pdf)
        template = wrap_pdf_as_dicom(pdf, sop_instance_uid=_UID_PLACEHOLDER)
        if template.count(_UID_PLACEHOLDER.encode()) != 2:  # file meta and dataset
            raise SystemExit("the placeholder UID is not where the wrk script expects it")
        instance_file = work / "instance.dcm"
        instance_file.write_bytes(template)
        orthanc_script = work / "orthanc.lua"
        orthanc_script.write_text(
            _ORTHANC_LUA.replace("@AUTH@", orthanc.authorization)
            .replace("@PATH@", str(instance_file))
            .replace("@PLACEHOLDER@", _UID_PLACEHOLDER)
            .replace("@PREFIX@", _UID_PREFIX),
            encoding="utf-8",
        )
        orthanc_url = f"http://127.0.0.1:{orthanc.port}/instances"

        argv = [sys.executable, "-m", "vigie", "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(workers), "--threads", str(threads)]
        process = procs.start(argv, log, env=env)
        wait_http(port, "/health", process, log)
        vigie_url = f"http://127.0.0.1:{port}/api/v1/documents"

        # One upload by hand on each side: stored, not refused (wrk would count a 401 as fast).
        status, answer = _post_once(
            port,
            "/api/v1/documents",
            {
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
            body,
        )
        if status != 202:
            raise SystemExit(f"Vigie REST intake answered {status}: {answer[:300]!r}")
        stored_id = orthanc.upload(template.replace(_UID_PLACEHOLDER.encode(), _uid(0, 0, 1)))
        vigie_before = documents_count(env)
        orthanc_before = orthanc.count_instances()
        print(f"  (Orthanc stored a check instance {stored_id})")

        for index in range(rounds):
            print(f" round {index + 1}/{rounds}")
            runs["vigie"].append(_wrk_post("vigie", vigie_script, vigie_url, duration, process.pid))
            nonce = str(index + 1)
            runs["orthanc"].append(
                _wrk_post(
                    "orthanc", orthanc_script, orthanc_url, duration, orthanc.process.pid, nonce
                )
            )
        # A rare refusal under load is a figure, not a reason to lose the run: it is kept in
        # "errors" (and Orthanc's own error lines in "server_errors").
        for name, rs in runs.items():
            if any(r.errors for r in rs):
                print(f"  warning: {name} answered errors: {[r.errors for r in rs if r.errors]}")
        vigie_stored = documents_count(env) - vigie_before
        orthanc_stored = orthanc.count_instances() - orthanc_before
        if with_profile:
            load = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", "-s", str(vigie_script), vigie_url]
            hot = profile_under_load("ingest", load, process, duration, work)
    finally:
        procs.stop_all()
    vigie, orthanc_figures = _summary(runs["vigie"]), _summary(runs["orthanc"])
    vigie.update(documents_stored=vigie_stored, upload_bytes=len(body))
    orthanc_figures.update(
        instances_stored=orthanc_stored, upload_bytes=len(template), version=orthanc.version
    )
    if orthanc_figures["errors"]:
        orthanc_figures["server_errors"] = _error_lines(work / "orthanc")
    if vigie["errors"]:
        vigie["server_errors"] = [x for x in tail(log).splitlines() if "rror" in x][-5:]
    ratio = vigie["documents_per_s"] / max(orthanc_figures["documents_per_s"], 1e-9)
    return {
        "document_bytes": len(pdf),
        "connections": CONNECTIONS,
        "duration_s": duration,
        "rounds": rounds,
        "vigie_workers": workers,
        "vigie_threads": threads,
        "orthanc_http_threads": HTTP_THREADS,
        "vigie": vigie,
        "orthanc": orthanc_figures,
        "ratio_vigie_over_orthanc": round(ratio, 4),
        "target": {
            "ratio_at_least": goal.INGEST_OVER_ORTHANC,
            "cpu_ms_per_document_at_most": goal.INGEST_CPU_MS,
            "met": ratio >= goal.INGEST_OVER_ORTHANC
            and (vigie.get("cpu_ms_per_document") or 0.0) <= goal.INGEST_CPU_MS,
        },
        "hottest_frames": hot,
    }


def run_ingest(duration: int, rounds: int, profile: bool) -> dict[str, Any]:
    """The orchestrator's entry: REST vs Orthanc (interleaved), then MLLP; also writes
    intake-latest.json."""
    return run(duration, rounds, with_profile=profile)


def run(
    duration: int = 5,
    rounds: int = 3,
    workers: int = 2,
    threads: int = 8,
    with_profile: bool = False,
    with_mllp: bool = True,
) -> dict[str, Any]:
    ensure_debian_packages()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vigie-bench-intake-") as tmp:
        work = Path(tmp)
        print("REST ingest, Vigie vs Orthanc (200 KB, 8 connections):")
        rest = bench_rest_vs_orthanc(work, duration, rounds, workers, threads, with_profile)
        mllp: dict[str, Any] = {}
        if with_mllp:
            print("MLLP (ORU^R01 without PDF, 8 connections, SQLite then PostgreSQL):")
            mllp = run_mllp(work, production_env(work / "home"), duration, rounds)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rest": rest,
        # SQLite's figures where earlier reports read them, PostgreSQL's beside them.
        "mllp": mllp.get("sqlite"),
        "mllp_postgresql": mllp.get("postgresql"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    out = RESULTS / "intake-latest.json"
    last = last_run(out)
    for database in ("sqlite", "postgresql"):
        figures, key = mllp.get(database), "mllp" if database == "sqlite" else "mllp_postgresql"
        before = last.get(key)
        if isinstance(figures, dict) and "messages_per_s" in figures and isinstance(before, dict):
            when = {"when": last.get("when", "")}
            compare(figures, {**before, **when}, "messages_per_s", ("when", "cpu_ms_per_message"))
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="granian workers")
    parser.add_argument("--threads", type=int, default=8, help="granian blocking threads")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graph of Vigie")
    parser.add_argument("--no-mllp", action="store_true")
    options = parser.parse_args(argv)
    results = run(
        options.duration,
        options.rounds,
        options.workers,
        options.threads,
        options.profile,
        not options.no_mllp,
    )
    rest = results["rest"]
    for name in ("vigie", "orthanc"):
        r = rest[name]
        print(
            f"{name:<8} {r['documents_per_s']:>8,.1f} docs/s  p50 {r['p50_ms']:.2f} ms"
            f"  p99 {r['p99_ms']:.2f} ms  (median of {rest['rounds']} rounds)"
        )
    print(
        f"ratio vigie/orthanc {rest['ratio_vigie_over_orthanc']:.3f} (target ≥ {goal.INGEST_OVER_ORTHANC:g}, CPU ≤ {goal.INGEST_CPU_MS:g} ms/doc): "
        + ("met" if rest["target"]["met"] else "NOT met")
    )
    for key in ("mllp", "mllp_postgresql"):
        figures = results.get(key) or {}
        if "messages_per_s" in figures:
            print(
                f"{key} {figures['messages_per_s']:,.1f} messages/s, "
                f"{figures['cpu_ms_per_message']:.3f} ms CPU/message (target ≥ {MLLP_TARGET:g})"
                + (
                    f", {figures['ratio_to_previous']:.2f} x the previous run's"
                    f" {figures['previous']['messages_per_s']:,.1f}"
                    if "ratio_to_previous" in figures
                    else ""
                )
            )
    for kind, title in (("self", "self time"), ("by_vigie_caller", "by Vigie caller")):
        if rest["hottest_frames"].get(kind):
            print(f"hottest frames ({title}):")
        for spot in rest["hottest_frames"].get(kind, []):
            print(f"  {spot['percent']:5.1f}%  {spot['frame']}")
    print(f"written {RESULTS / 'intake-latest.json'}")


if __name__ == "__main__":
    main()
