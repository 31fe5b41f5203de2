"""Whole system: real `vigie check` processes on their own VIGIE_HOME (see vigie/ops/tests for
each check in-process). The correct installation runs its `vigie check` inside a network
namespace that holds the guard's nftables table, never touching the host's ruleset."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VIGIE, System
from vigie.guard import nft
from vigie.guard.policy import load_policy
from vigie.ops.testing import HOST, POLICY, make_certificate


def _check_json(env: dict[str, str], *argv: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [*argv, *VIGIE, "check", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_it_reports_an_unmigrated_database(
    bare_env: dict[str, str], postgres_url: str | None
) -> None:
    env = {**bare_env, **({"DATABASE_URL": postgres_url} if postgres_url else {})}
    system = System(home=Path(env["VIGIE_HOME"]), env=env)
    system.run("keys", "init")
    system.run("migrate", "contenttypes", "--no-input")  # a database, not migrated
    code, report = _check_json(env)
    assert code == 1
    assert report["ok"] is False
    found = {f["id"]: f for f in report["findings"]}
    assert found["database"]["status"] == "ok"
    migrations = found["database.migrations"]
    assert migrations["status"] == "failure"
    assert "not migrated" in migrations["message"]
    assert "vigie migrate" in migrations["fix"]


def test_it_reports_a_fresh_home_without_a_database(bare_env: dict[str, str]) -> None:
    subprocess.run([*VIGIE, "keys", "init"], env=bare_env, check=True, capture_output=True)
    code, report = _check_json(bare_env)
    assert code == 1
    found = {f["id"]: f for f in report["findings"]}
    assert found["database"]["status"] == "failure"
    assert "vigie migrate" in found["database"]["fix"]
    assert found["keyring"]["status"] == "ok"
    # Checking created nothing.
    assert not (Path(bare_env["VIGIE_HOME"]) / "vigie.sqlite3").exists()


def test_a_migrated_test_installation_answers_in_json(system: System) -> None:
    code, report = _check_json(system.env)
    found = {f["id"]: f for f in report["findings"]}
    assert found["database.migrations"]["status"] == "ok"
    assert found["keyring"]["status"] == "ok"
    # Test mode and no guard: not a production installation, and it says so.
    assert found["mode"]["status"] == "failure"
    assert code == 1
    assert report["ok"] is False


# In a network namespace the host's PostgreSQL is out of reach (its own loopback): this one
# runs on SQLite, accepted explicitly, and only in the SQLite pass.
@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.sqlite_only
def test_a_correct_production_installation_exits_zero(
    tmp_path: Path, bare_env: dict[str, str], netns: str
) -> None:
    home = Path(bare_env["VIGIE_HOME"])
    home.mkdir(mode=0o700)
    cert, key = make_certificate(tmp_path)
    (home / "vigie-policy.toml").write_text(POLICY)
    env = {
        **bare_env,
        "VIGIE_MODE": "production",
        "VIGIE_ALLOWED_HOSTS": HOST,
        "VIGIE_CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
        "VIGIE_TLS_CERT": str(cert),
        "VIGIE_TLS_KEY": str(key),
        "VIGIE_ALLOW_SQLITE": "1",
    }
    system = System(home=home, env=env)
    system.run("keys", "init")
    system.run("migrate", "--no-input")
    backups = tmp_path / f"backups-{secrets.token_hex(3)}"
    system.run("backup", "create", str(backups))
    system.run("backup", "verify", str(backups))
    system.run("shell", "-c", "from vigie.guard.heartbeat import beat; beat()")
    # One pass of the audit watcher: its heartbeat, and the tail anchored.
    system.run("audit", "watch", "--once")
    # The guard's table, in the namespace where this `vigie check` runs (never the host's).
    nft.install(load_policy(home / "vigie-policy.toml"))
    code, report = _check_json(env, "ip", "netns", "exec", netns)
    problems = [f for f in report["findings"] if f["status"] != "ok"]
    assert code == 0, problems
    assert report["ok"] is True
    # Warnings the test machine cannot avoid: SQLite allowed in production, and Debian 12's
    # SQLite library predating the WAL-reset fix.
    assert {f["id"] for f in problems} <= {"database.engine", "database.sqlite_library"}, problems
