"""Key rotation while another process reads every document: every read succeeds, and every
data key ends up wrapped by the new key."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import System

pytestmark = pytest.mark.slow


def test_rotation_under_concurrent_reads_never_fails_a_read(system: System, tmp_path: Path) -> None:
    system.run(
        "shell",
        "-c",
        "import io, datetime;"
        "from vigie.records.models import Patient; from vigie.records.ingest import ingest, DocumentMeta;"
        "p=Patient.objects.create(ipp='IPPROT1', family_name='ROTATION', given_names='Test', birth_date='1970-01-01');"
        "[ingest(p, DocumentMeta(kind='other', title=f'd{i}', clinical_date=datetime.date(2026,1,1),"
        " source_system='T'), io.BytesIO(b'%PDF rotation ' * (50 + i))) for i in range(300)]",
    )
    stop = tmp_path / "stop"
    reader = system.popen(
        [sys.executable, "-m", "tests.scripts.read_loop", str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert reader.stdout is not None
        first = reader.stdout.readline()  # the reader has finished one full pass
        assert first.startswith("READ ok"), first
        for _ in range(3):
            rotated = system.run("keys", "rotate")
            assert "300 data key(s) re-wrapped" in rotated.stdout
        time.sleep(0.5)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert "READ fail" not in out, out
    assert "failures=0" in out
    listing = system.run("keys", "list").stdout
    active_lines = [line for line in listing.splitlines() if "yes" in line]
    assert len(active_lines) == 1, listing
    assert "300" in active_lines[0], listing
    # The three old keys wrap nothing now and can be removed.
    usage = system.run(
        "shell", "-c", "from vigie.records.keys import key_usage; print(key_usage())"
    ).stdout
    assert usage.count(":") == 1, usage
