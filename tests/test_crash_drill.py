"""Nothing lost: an ingesting process killed with SIGKILL at random points (20 runs).

Afterwards every acknowledged document opens intact, and `vault fsck` finds no row without a
valid blob (orphan blobs from the killed write are allowed: they are ciphertext nobody
references, and fsck --repair removes them).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import System

pytestmark = pytest.mark.slow

RUNS = 20


def _verify_in_subprocess(system: System, acked: dict[str, str]) -> dict[str, str]:
    script = (
        "import json,sys,django,os;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE','vigie.settings');"
        "from vigie.startup import preflight; preflight(); django.setup();"
        "from vigie.records.models import Document; from vigie.records.content import verify;"
        "acked=json.load(sys.stdin); out={}\n"
        "for pk, sha in acked.items():\n"
        "    d=Document.objects.filter(pk=pk).first()\n"
        "    if d is None: out[pk]='missing row'; continue\n"
        "    if d.sha256!=sha: out[pk]='wrong hash'; continue\n"
        "    try: verify(d)\n"
        "    except Exception as e: out[pk]=repr(e)\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(acked),
        env=system.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    problems: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return problems


def test_sigkill_during_ingest_loses_no_acknowledged_document(system: System) -> None:
    system.run(
        "shell",
        "-c",
        "from vigie.records.models import Patient;"
        "Patient.objects.create(ipp='IPPCRASH1', family_name='CRASH', given_names='Test',"
        " birth_date='1970-01-01')",
    )
    rng = random.Random(20261129)
    acked: dict[str, str] = {}
    for _run in range(RUNS):
        proc = system.popen(
            [sys.executable, "-m", "tests.scripts.ingest_loop", "IPPCRASH1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # Wait for the first acknowledgement so the kill lands in the ingest loop itself,
        # then kill at a random moment within the next 0-400 ms.
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("ACK "), proc.stderr.read() if proc.stderr else first
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        for line in [first, *rest.splitlines()]:
            parts = line.split()
            # A torn last line was never a complete acknowledgement.
            if len(parts) == 3 and parts[0] == "ACK" and len(parts[2]) == 64:
                acked[parts[1]] = parts[2]
    assert len(acked) >= RUNS
    problems = _verify_in_subprocess(system, acked)
    assert problems == {}, problems
    fsck = system.run("vault", "fsck", check=False)
    assert "MISSING BLOB" not in fsck.stdout
    assert "CORRUPT" not in fsck.stdout
    assert f"{len(acked)}" in fsck.stdout or "document(s) checked" in fsck.stdout
