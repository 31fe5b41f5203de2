"""The audit chain under real concurrency: 8 processes × 1,000 appends (4 threads each, so
group commit batches events), and SIGKILL in the middle of a burst. Runs on SQLite and, with
DATABASE_URL set, on PostgreSQL.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import System

pytestmark = pytest.mark.slow

SCRIPT = str(Path(__file__).parent / "scripts" / "audit_append.py")
PROCESSES = 8
PER_PROCESS = 1000


def _acks(output: str) -> dict[int, str]:
    acked: dict[int, str] = {}
    for line in output.splitlines():
        if line.startswith("ACK "):
            _, seq, hash_ = line.split()
            acked[int(seq)] = hash_
    return acked


def _stored(system: System) -> dict[int, str]:
    result = system.run(
        "shell",
        "-c",
        "from vigie.audit.models import AuditEvent\n"
        "for seq, h in AuditEvent.objects.values_list('seq', 'hash'): print('EV', seq, h)",
    )
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("EV ")]
    return {int(seq): h for _, seq, h in rows}


def test_it_keeps_a_gapless_verified_chain_with_8_concurrent_processes(system: System) -> None:
    processes = [
        system.popen(
            [sys.executable, SCRIPT, str(PER_PROCESS), "4", f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(PROCESSES)
    ]
    acked: dict[int, str] = {}
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        assert out.rstrip().endswith("DONE")
        mine = _acks(out)
        assert len(mine) == PER_PROCESS
        assert not set(mine) & set(acked), "two appends got the same sequence number"
        acked.update(mine)

    assert sorted(acked) == list(range(1, PROCESSES * PER_PROCESS + 1))
    assert _stored(system) == acked
    verify = system.run("audit", "verify", "--quiet")
    assert f"{PROCESSES * PER_PROCESS} events" in verify.stdout
    # At least one checkpoint per 1,000 events was signed along the way.
    lines = (system.home / "audit" / "checkpoints.jsonl").read_text().splitlines()
    assert len(lines) >= PROCESSES * PER_PROCESS // 1000


def test_sigkill_during_a_burst_loses_no_acknowledged_event(system: System) -> None:
    rng = random.Random(20261129)
    acked: dict[int, str] = {}
    for _run in range(5):
        process = system.popen(
            [sys.executable, SCRIPT, "0", "4"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert process.stdout is not None
        first = process.stdout.readline()  # Django is up and appending
        time.sleep(rng.uniform(0.1, 1.0))  # then kill it in the middle of the burst
        process.send_signal(signal.SIGKILL)
        out, _ = process.communicate(timeout=60)
        run_acks = _acks(first + out)
        assert run_acks, "the appender printed nothing before being killed"
        acked.update(run_acks)

    stored = _stored(system)
    missing = {seq for seq in acked if stored.get(seq) != acked[seq]}
    assert not missing, f"acknowledged events lost or changed: {sorted(missing)[:10]}"
    assert sorted(stored) == list(range(1, len(stored) + 1))
    system.run("audit", "verify", "--quiet")


_PARALLEL_CHECK = """
import json
from django.db import connection
from vigie.audit.immutability import drop_triggers
from vigie.audit.verify import verify

def first(jobs):
    result = verify(jobs=jobs, min_per_job=500)
    return result.first.seq if result.first else None

out = {"clean": [first(1), first(4)]}
drop_triggers(connection)
with connection.cursor() as cursor:
    cursor.execute("UPDATE audit_auditevent SET reason = 'edited' WHERE seq = 2600")
out["edit"] = [first(1), first(4)]
with connection.cursor() as cursor:
    cursor.execute("DELETE FROM audit_auditevent WHERE seq = 1001")  # the end of a range
out["seam"] = [first(1), first(4)]
print("RESULT " + json.dumps(out))
"""


def test_parallel_verify_finds_the_same_first_bad_event_as_a_single_walk(system: System) -> None:
    process = system.popen(
        [sys.executable, SCRIPT, "4000", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    out = system.run("shell", "-c", _PARALLEL_CHECK).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result == {"clean": [None, None], "edit": [2600, 2600], "seam": [1001, 1001]}
