"""`make bench`: every benchmark in one run, then bench/results/latest.json, the chart and
the table in docs/bench.md.

    .venv/bin/python -m bench.run            # the full run (under 10 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick    # a smoke run: every stage, short and small
    .venv/bin/python -m bench.run --only keys,coldstart

Stages, in order: vault (seal/open), fetch (nginx, Orthanc, Vigie on SQLite and PostgreSQL,
32 and 256 connections), ingest (Vigie REST vs Orthanc POST /instances), audit verify
(1,000,000 events), key rotation, cold start, backup (create, incremental, verify and restore
of 10,000 documents of 200 KB). A stage that fails is recorded with its error
and the run goes on; Ctrl-C (or SIGTERM) stops the stage in progress, which stops what it
started, and the run ends there. Every process started by the run carries BENCH_RUN_ID in its
environment: after each stage, anything still carrying it is stopped and reported, so nothing
outlives the run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from bench.figures import figures

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
os.environ.setdefault("VIGIE_MODE", "test")

RESULTS = Path(__file__).parent / "results"
LATEST = RESULTS / "latest.json"
QUICK_JSON = RESULTS / "quick.json"  # a smoke run never replaces the real figures
RESULT_MARK = "@@BENCH-RESULT@@"  # the line a child stage prints its report on
RUN_ID_VAR = "BENCH_RUN_ID"
POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Sizes and durations. The full plan aims at 9 minutes on 2 cores (the budget is 10):
    vault ~15 s; fetch ~3.5 min (4 servers x 2 connection counts x 3 rounds x 5 s, plus
    starting nginx, Orthanc, two Vigies and the profile); ingest ~1.5 min (2 interleaved
    rounds, MLLP, profile); audit ~2.3 min (building the 1,000,000 events is most of it);
    key rotation ~25 s; cold start ~40 s; backup ~3-4.5 min (seeding 10,000 sealed 200 KB
    documents is 1-2 min of it, fsync-bound), which takes the whole run past 10 minutes.
    Estimated from stage timings of --quick runs and single-stage runs, on a machine shared
    with other work."""

    vault_count: int = 1000
    vault_rounds: int = 5
    fetch_duration: int = 5
    fetch_rounds: int = 3
    connections: tuple[int, ...] = (32, 256)
    ingest_duration: int = 5
    ingest_rounds: int = 2
    profile: bool = True
    audit_events: int = 1_000_000
    rotation_keys: int = 10_000
    coldstart_runs: int = 5
    backup_documents: int = 10_000
    # HPRIM through the hot folder: files per round (~25-50 s each at today's rate).
    hprim_files: int = 500
    hprim_rounds: int = 2


QUICK = Plan(
    vault_count=200,
    vault_rounds=1,
    fetch_duration=2,
    fetch_rounds=1,
    ingest_duration=2,
    ingest_rounds=1,
    profile=False,
    audit_events=100_000,
    rotation_keys=1_000,
    coldstart_runs=2,
    backup_documents=300,
    hprim_files=100,
    hprim_rounds=1,
)


# --- processes --------------------------------------------------------------------------------


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: every finally stops what it started.
    raise KeyboardInterrupt(f"signal {signum}")


def marked_processes(run_id: str) -> list[int]:
    """Processes (other than this one) whose environment carries this run's id."""
    needle = f"{RUN_ID_VAR}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def _describe(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"{pid} (gone)"
    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"{pid} {command[:160]}"


def reap(run_id: str) -> list[str]:
    """Stop whatever the run left behind (TERM, then KILL); what was found, for the record."""
    left = marked_processes(run_id)
    if not left:
        return []
    described = [_describe(pid) for pid in left]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and marked_processes(run_id):
            time.sleep(0.1)
        left = marked_processes(run_id)
        if not left:
            break
    return described


def run_child(argv: list[str], timeout: float, log: Path) -> dict[str, Any]:
    """Run a stage in a process of its own (Django is configured once per process, and each
    of these stages configures it for a throwaway home of its own); its report.

    stdout is echoed, stderr goes to `log`. If interrupted, the child gets SIGINT first, so
    its own cleanup (temporary home, PostgreSQL database) runs, then SIGKILL.
    """
    with log.open("ab") as err:
        child = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
    report: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(RESULT_MARK):
                report = json.loads(line[len(RESULT_MARK) :])
            elif line.strip() and not line.startswith((" ", "{", "}")):
                print(f"    {line.rstrip()}", flush=True)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv[2]} took more than {timeout:.0f} s")
        code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            for sig, grace in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=grace)
                    break
    if code != 0 or report is None:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv[1:])} exited {code}:\n{tail}")
    return report


# --- the stages -------------------------------------------------------------------------------


def stage_vault(plan: Plan, work: Path) -> dict[str, Any]:
    from bench import vault

    return vault.run(plan.vault_count, plan.vault_rounds)


def stage_fetch(plan: Plan, work: Path) -> dict[str, Any]:
    from bench.fetch import run_fetch

    return run_fetch(plan.fetch_duration, plan.fetch_rounds, list(plan.connections), plan.profile)


def stage_ingest(plan: Plan, work: Path) -> dict[str, Any]:
    from bench.intake import run_ingest

    return run_ingest(plan.ingest_duration, plan.ingest_rounds, plan.profile)


def stage_hprim(plan: Plan, work: Path) -> dict[str, Any]:
    from bench.hprim_folder import run as run_hprim

    return run_hprim(plan.hprim_files, plan.hprim_rounds)


def stage_audit(plan: Plan, work: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.audit_verify", str(plan.audit_events)]
    argv += ["--jobs", str(os.cpu_count() or 1)]
    return run_child(argv, 420, work / "audit.log")


def stage_keys(plan: Plan, work: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.keys", "--count", str(plan.rotation_keys)]
    return run_child(argv, 240, work / "keys.log")


def stage_coldstart(plan: Plan, work: Path) -> dict[str, Any]:
    from bench import coldstart

    return coldstart.run(plan.coldstart_runs)


def stage_backup(plan: Plan, work: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.backup", "--count", str(plan.backup_documents)]
    argv += ["--dir", str(work)]  # the homes and DEST: about 3 x 2 GB, removed by the stage
    return run_child(argv, 900, work / "backup.log")


STAGES: dict[str, tuple[str, Callable[[Plan, Path], dict[str, Any]]]] = {
    "vault": ("vault: seal 200 KB documents, open 50 MB", stage_vault),
    "fetch": ("fetch: nginx, Orthanc, Vigie SQLite/PostgreSQL", stage_fetch),
    "ingest": ("ingest: Vigie REST vs Orthanc POST /instances", stage_ingest),
    "hprim": ("HPRIM Santé files through the hot folder", stage_hprim),
    "audit": ("audit verify", stage_audit),
    "keys": ("key rotation", stage_keys),
    "coldstart": ("cold start of `vigie serve` to first document", stage_coldstart),
    "backup": ("backup create / restore of 200 KB documents", stage_backup),
}


# --- machine and versions ---------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _command(*argv: str, stream: str = "stdout") -> str | None:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        found = shutil.which(argv[0], path="/usr/sbin:/usr/bin:/sbin:/bin")
        if found is None:
            return None
        argv = (found, *argv[1:])
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout if stream == "stdout" else done.stderr) or done.stdout or done.stderr
    return text.strip().splitlines()[0].strip() if text.strip() else None


def _disk(path: Path) -> str | None:
    """The block device under `path` and whether it spins (best effort: VMs often say SSD
    for whatever the host has)."""
    source = _command("findmnt", "-n", "-o", "SOURCE", "--target", str(path))
    if not source or not source.startswith("/dev/"):
        return source
    name = Path(os.path.realpath(source)).name
    block = Path("/sys/class/block") / name
    parent = block.resolve().parent.name if (block / "partition").exists() else name
    rotational = _read(f"/sys/block/{parent}/queue/rotational").strip()
    model = _read(f"/sys/block/{parent}/device/model").strip()
    kind = {"0": "non-rotational (SSD)", "1": "rotational"}.get(rotational, "unknown")
    if parent.startswith(("vd", "xvd")):
        # A paravirtual disk reports whatever the hypervisor chose, not the host's medium.
        kind = f"virtio, says {kind}"
    return f"{source}: {kind}" + (f", {model}" if model else "")


def machine() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or platform.machine(),
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME")
        if hasattr(platform, "freedesktop_os_release")
        else None,
        "arch": platform.machine(),
        "virtualization": _command("systemd-detect-virt"),
        "disk": _disk(RESULTS),
    }


def _postgres_version() -> str | None:
    try:
        import psycopg

        url = os.environ.get("BENCH_POSTGRES_URL") or POSTGRES_ADMIN_URL
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception:  # no server: the version is simply unknown
        return None


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    import django

    nginx = _command("nginx", "-v", stream="stderr")
    orthanc = _command("Orthanc", "--version")
    wrk = _command("wrk", "-v")
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_version(),
        "nginx": nginx.rpartition("/")[2] if nginx else None,
        "orthanc": orthanc.split()[-1] if orthanc else None,
        "granian": _package("granian"),
        "wrk": wrk.split()[1] if wrk and len(wrk.split()) > 1 else None,
        "cryptography": _package("cryptography"),
        "pydicom": _package("pydicom"),
        "matplotlib": _package("matplotlib"),
    }


# --- main -------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _bench_dirs() -> set[str]:
    return {str(p) for p in Path(tempfile.gettempdir()).glob("vigie-bench-*")}


def _write(document: dict[str, Any], path: Path) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="every Vigie benchmark in one run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (bench/results/quick.json, docs untouched)",
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated stages among {','.join(STAGES)} (quick.json, docs untouched)",
    )
    parser.add_argument(
        "--no-doc", "--no-readme", action="store_true", help="leave docs/bench.md alone"
    )
    options = parser.parse_args(argv)
    plan = QUICK if options.quick else Plan()
    chosen = [s.strip() for s in options.only.split(",")] if options.only else list(STAGES)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(unknown)}")

    run_id = secrets.token_hex(8)
    os.environ[RUN_ID_VAR] = run_id  # inherited by every process the stages start
    previous_term = signal.signal(signal.SIGTERM, _interrupted)
    # Ctrl-C must unwind even when started with SIGINT ignored (a background job, some CI).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    dirs_before = _bench_dirs()
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-run-"))
    document: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": options.quick,
        "plan": plan.__dict__ | {"connections": list(plan.connections)},
        "machine": machine(),
        "versions": {},
        "stages": {},
        "figures": [],
    }
    print(f"bench run {run_id}{' (quick)' if options.quick else ''}: {', '.join(chosen)}")
    interrupted = False
    try:
        for index, name in enumerate(chosen, 1):
            title, function = STAGES[name]
            print(
                f"[{index}/{len(chosen)}] {title}  (at {_clock(time.monotonic() - started)})",
                flush=True,
            )
            stage_started = time.monotonic()
            entry: dict[str, Any] = {"ok": False}
            document["stages"][name] = entry
            try:
                entry["result"] = function(plan, work)
                entry["ok"] = True
            except KeyboardInterrupt:
                entry["error"] = "interrupted"
                interrupted = True
                raise
            except (Exception, SystemExit) as exc:  # a failed stage is reported, the run goes on
                entry["error"] = f"{type(exc).__name__}: {exc}"[-3000:]
                traceback.print_exc()
            finally:
                entry["seconds"] = round(time.monotonic() - stage_started, 1)
                # Ctrl-C again must not cut the clean-up short.
                handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    leftovers = reap(run_id)
                finally:
                    signal.signal(signal.SIGINT, handler)
                if leftovers:
                    entry["leftover_processes_stopped"] = leftovers
                    print(f"    stopped {len(leftovers)} leftover process(es): {leftovers}")
                state = "ok" if entry["ok"] else f"FAILED ({entry.get('error', '')[:200]})"
                print(
                    f"[{index}/{len(chosen)}] {name} {state} in {entry['seconds']:.1f} s"
                    f"  (elapsed {_clock(time.monotonic() - started)})",
                    flush=True,
                )
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
        shutil.rmtree(work, ignore_errors=True)
        document["elapsed_s"] = round(time.monotonic() - started, 1)
        document["interrupted"] = interrupted
        left_dirs = sorted(_bench_dirs() - dirs_before)
        if left_dirs:
            document["leftover_temp_dirs"] = left_dirs
        document["figures"] = figures(document["stages"])
        document["processes_left"] = [_describe(pid) for pid in marked_processes(run_id)]
        if interrupted:
            out = RESULTS / "interrupted.json"
        else:
            document["versions"] = versions()
            out = QUICK_JSON if options.quick or options.only else LATEST
        _write(document, out)
        print(f"written {out}  (total {_clock(document['elapsed_s'])})")
        if document["elapsed_s"] > 600 and not options.quick:
            print("warning: over the 10-minute budget; see each stage's seconds in the JSON")
    # Only a full run rewrites docs/bench.md: its table is the reference.
    return _finish(document, out, write_doc=not (options.no_doc or options.quick or options.only))


def _finish(document: dict[str, Any], out: Path, *, write_doc: bool) -> int:
    # Here, not at the top: matplotlib is only needed once the run is over.
    from bench import chart, report

    try:
        print(f"chart: {chart.render(document, out.with_suffix('.png'))}")
    except Exception:  # the table still matters without the picture
        traceback.print_exc()
    report.print_table(document)
    if write_doc:
        report.update_doc(document)
        print(f"docs/bench.md now shows this run ({out.name})")
    if document.get("processes_left"):
        print(f"processes still running after the run: {document['processes_left']}")
        return 1
    return 0 if all(s["ok"] for s in document["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
