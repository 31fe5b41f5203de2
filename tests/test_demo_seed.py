"""`vigie demo --no-serve` on a fresh VIGIE_HOME: a realistic clinic, and no plaintext on disk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VIGIE

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def test_demo_seeds_a_clinic_and_leaves_no_pdf_on_disk(bare_env: dict[str, str]) -> None:
    env = {**bare_env, "VIGIE_MODE": "demo"}
    home = Path(env["VIGIE_HOME"])
    result = subprocess.run(
        [*VIGIE, "demo", "--no-serve"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "admin.it" in result.stdout  # the logins are printed
    # Nothing else: no log line (a checkpoint's JSON once came before the table).
    output = result.stdout + result.stderr
    assert "audit checkpoint" not in output
    assert not [line for line in output.splitlines() if "{" in line], output

    credentials = home / "demo-credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    users = json.loads(credentials.read_text())["users"]
    roles = sorted(user["role"] for user in users)
    assert roles.count("doctor") == 3
    assert roles.count("admin") == 1
    for user in users:
        assert set(user) == {"username", "password", "role", "totp_secret"}
        assert len(user["password"]) >= 12

    counts = subprocess.run(
        [
            *VIGIE,
            "shell",
            "-c",
            "from vigie.records.models import *; from vigie.accounts.models import User;"
            "import json; print(json.dumps({"
            "'patients': Patient.objects.count(), 'documents': Document.objects.count(),"
            "'kinds': sorted(set(Document.objects.values_list('kind', flat=True))),"
            "'scopes': [sorted(CareRelationship.objects.filter(doctor=d).values_list('patient__ipp', flat=True))"
            " for d in User.objects.filter(role='doctor')]}))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert counts.returncode == 0, counts.stderr
    data = json.loads(counts.stdout.strip().splitlines()[-1])
    assert data["patients"] >= 50
    assert data["documents"] >= 300
    assert {"lab_result", "imaging_report", "consultation_letter", "discharge_summary"} <= set(
        data["kinds"]
    )
    scopes = [set(s) for s in data["scopes"]]
    assert len({frozenset(s) for s in scopes}) == 3, "doctors must have different scopes"
    assert any(a & b for i, a in enumerate(scopes) for b in scopes[i + 1 :]), "scopes overlap"

    # Never plaintext at rest: no file under VIGIE_HOME — blobs, keyring, database — holds a PDF.
    offenders = [
        str(path) for path in home.rglob("*") if path.is_file() and b"%PDF" in path.read_bytes()
    ]
    assert offenders == []

    # Seeding twice is harmless: same clinic, same logins.
    again = subprocess.run(
        [*VIGIE, "demo", "--no-serve"], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(credentials.read_text())["users"] == users
