"""`vigie check` against a correct installation (exit 0) and deliberately broken ones (exit 1,
each problem named with its fix)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F
from django.utils import timezone

from vigie.audit import watch
from vigie.audit.checkpoints import ensure_signing_key, write_checkpoint
from vigie.audit.log import record
from vigie.audit.models import AuditHead
from vigie.guard import nft, snapshot
from vigie.guard.models import GuardState
from vigie.guard.policy import load_policy
from vigie.ops import check_base, checks, checks_services, checks_storage
from vigie.ops.testing import HOST, POLICY, make_certificate
from vigie.vault.kek_store import Keyring

# Before any fixture replaces it: the attack test reads the real processes.
REAL_MLLP_LISTENERS = checks_services.mllp_listeners


@dataclass
class Installation:
    home: Path
    keyring: Path
    policy: Path


@pytest.fixture
def installation(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, db: None):
    """Everything `vigie check` looks at, the way a correct production installation has it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    keyring_dir = tmp_path / "keys"  # apart from the data, as /etc/vigie/keys is
    settings.VIGIE_MODE = "production"
    settings.PRODUCTION = True
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [HOST]
    settings.CSRF_TRUSTED_ORIGINS = [f"https://{HOST}"]
    settings.VIGIE_TRUSTED_PROXIES = []
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 63072000
    settings.VIGIE_HOME = home
    settings.VIGIE_BLOB_DIR = home / "blobs"
    settings.STATIC_ROOT = home / "static"
    settings.MEDIA_ROOT = home / "media"
    settings.VIGIE_KEYS_DIR = keyring_dir
    settings.VIGIE_KEYRING_FILE = keyring_dir / "keyring.json"
    settings.VIGIE_SECRET_KEY_DEFAULT_FILE = keyring_dir / "secret_key"
    settings.VIGIE_POLICY_FILE = home / "vigie-policy.toml"
    settings.VIGIE_AUDIT_CHECKPOINT_FILE = home / "audit" / "checkpoints.jsonl"
    settings.VIGIE_AUDIT_CHECKPOINT_SECONDS = 60
    settings.VIGIE_GUARD_SILENCE_SECONDS = 120

    Keyring.create(settings.VIGIE_KEYRING_FILE)
    fd = os.open(settings.VIGIE_SECRET_KEY_DEFAULT_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(settings.SECRET_KEY)
    ensure_signing_key()
    settings.VIGIE_POLICY_FILE.write_text(POLICY)

    cert, key = make_certificate(home)
    settings.VIGIE_TLS_CERT = str(cert)
    settings.VIGIE_TLS_KEY = str(key)
    settings.VIGIE_SECRET_KEY_FILE = None
    settings.VIGIE_SECRET_KEY_IN_ENVIRONMENT = False
    # The suite's database is SQLite unless the run targets PostgreSQL.
    settings.VIGIE_ALLOW_SQLITE = True

    # The kernel's view: Vigie's table is there and only the portal listens. (The real nft,
    # in a network namespace, is tested below.)
    monkeypatch.setattr(nft, "table_exists", lambda: True)
    portal = snapshot.ListeningSocket("0.0.0.0", 8443, "tcp", "granian", 4242)
    monkeypatch.setattr(snapshot, "listening_sockets", lambda: (portal,))
    # No MLLP listener here (other processes on this machine are not this installation's).
    monkeypatch.setattr(checks_services, "mllp_listeners", list)

    GuardState.get()
    GuardState.objects.filter(pk=GuardState.SINGLETON).update(
        last_heartbeat=timezone.now(), guard_pid=4242, guard_host="vigie"
    )
    record("backup.create", extra={"snapshot": "20261130T010000Z"})
    record("backup.verify", extra={"snapshot": "20261130T010000Z", "problems": 0})
    write_checkpoint(force=True)
    settings.VIGIE_AUDIT_WATCH_HEARTBEAT_FILE = home / "audit" / "watch.heartbeat"
    watch.beat(0)
    return Installation(
        home=home, keyring=settings.VIGIE_KEYRING_FILE, policy=settings.VIGIE_POLICY_FILE
    )


def run_check(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("check", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def findings() -> dict[str, check_base.Finding]:
    return {f.id: f for f in checks.run_all(check_base.Context())}


def assert_fails(check_id: str, *needles: str, fix: str) -> check_base.Finding:
    finding = findings()[check_id]
    assert finding.status == check_base.FAILURE, finding
    for needle in needles:
        assert needle in finding.message, finding
    assert fix in finding.fix, finding
    code, output = run_check()
    assert code == 1
    assert f"FAIL  {check_id}" in output
    assert fix in output
    return finding


def test_it_passes_a_correct_installation(installation: Installation) -> None:
    found = findings()
    failures = [f for f in found.values() if f.status == check_base.FAILURE]
    assert failures == []
    warnings = [f for f in found.values() if f.status == check_base.WARNING]
    # Only what the test suite cannot avoid: its database may be SQLite (allowed explicitly),
    # from a library that may predate the WAL-reset fix.
    allowed = {"database.engine", "database.sqlite_library"}
    assert {f.id for f in warnings} <= allowed, warnings
    code, output = run_check()
    assert code == 0, output
    assert "0 failure(s)" in output


def test_it_prints_json_for_monitoring(installation: Installation) -> None:
    code, output = run_check("--json")
    assert code == 0
    report = json.loads(output)
    assert report["ok"] is True
    ids = {f["id"] for f in report["findings"]}
    assert {"keyring", "tls", "guard.heartbeat", "guard.nftables", "backup"} <= ids
    assert set(report["findings"][0]) == {"id", "status", "message", "fix"}


def test_it_reports_a_group_readable_keyring(installation: Installation) -> None:
    installation.keyring.chmod(0o640)
    assert_fails("keyring", "readable by group/others", "0640", fix="chmod 600")


def test_it_reports_a_keyring_folder_open_to_others(installation: Installation) -> None:
    installation.keyring.parent.chmod(0o755)
    assert_fails("keyring", "keyring folder", fix="chmod 700")


def test_it_reports_a_missing_keyring(installation: Installation) -> None:
    installation.keyring.unlink()
    assert_fails("keyring", "does not exist", fix="vigie keys export")


def test_it_reports_debug_on(installation: Installation, settings: Any) -> None:
    settings.DEBUG = True
    assert_fails("debug", "DEBUG is on", fix="VIGIE_DEBUG")


def test_it_reports_a_missing_policy(installation: Installation) -> None:
    installation.policy.unlink()
    assert_fails("guard.policy", "no such policy file", fix="vigie guard check-policy")


def test_it_reports_an_invalid_policy(installation: Installation) -> None:
    installation.policy.write_text(POLICY + "\n[guard]\nsnapshot_intervall = '10s'\n")
    assert_fails("guard.policy", "snapshot_intervall", fix="vigie guard check-policy")


def test_it_fails_when_the_audit_watcher_is_stopped(installation: Installation) -> None:
    # Without it the tail is anchored only when someone reads, and no anomaly rule runs.
    watch.beat(0, now=timezone.now() - timedelta(minutes=5))
    assert_fails("audit.watch", "5 min ago", fix="vigie audit watch")


def test_it_fails_when_the_audit_watcher_never_ran(installation: Installation) -> None:
    watch.heartbeat_path().unlink()
    assert_fails("audit.watch", "never reported", fix="vigie-audit-watch")


def test_it_reports_a_stale_heartbeat(installation: Installation) -> None:
    GuardState.objects.update(last_heartbeat=timezone.now() - timedelta(minutes=10))
    assert_fails("guard.heartbeat", "10 min ago", fix="vigie guard run")


def test_it_reports_a_guard_that_never_beat(installation: Installation) -> None:
    GuardState.objects.update(last_heartbeat=None)
    assert_fails("guard.heartbeat", "never reported", fix="vigie guard run")


def test_it_reports_no_tls_and_no_proxy(installation: Installation, settings: Any) -> None:
    settings.VIGIE_TLS_CERT = settings.VIGIE_TLS_KEY = None
    assert_fails("tls", "no TLS and no proxy", fix="VIGIE_TRUSTED_PROXIES")


def test_behind_a_proxy_tls_is_the_proxys(installation: Installation, settings: Any) -> None:
    settings.VIGIE_TLS_CERT = settings.VIGIE_TLS_KEY = None
    code, output = run_check("--behind-proxy", "127.0.0.1")
    assert code == 0, output
    settings.VIGIE_TRUSTED_PROXIES = ["10.0.0.5"]
    assert findings()["tls"].status == check_base.OK


def test_it_reports_an_expired_certificate(
    installation: Installation, settings: Any, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path, days=-1)
    settings.VIGIE_TLS_CERT, settings.VIGIE_TLS_KEY = str(cert), str(key)
    assert_fails("tls", "expired", fix="renew")


def test_it_warns_of_a_certificate_about_to_expire(
    installation: Installation, settings: Any, tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path, days=5)
    settings.VIGIE_TLS_CERT, settings.VIGIE_TLS_KEY = str(cert), str(key)
    assert findings()["tls"].status == check_base.WARNING
    assert run_check()[0] == 0  # a warning alone does not fail the check


def test_it_reports_a_keyring_inside_the_blob_store(
    installation: Installation, settings: Any
) -> None:
    settings.VIGIE_BLOB_DIR = installation.keyring.parent.parent
    assert_fails("keyring.location", "inside the blob store", fix="vigie keys move")


def test_it_reports_a_keyring_inside_the_web_root(
    installation: Installation, settings: Any
) -> None:
    settings.STATIC_ROOT = installation.keyring.parent
    assert_fails("keyring.location", "web root", fix="vigie keys move")


def test_it_says_the_keys_come_from_a_keys_directory(installation: Installation) -> None:
    finding = findings()["keyring.location"]
    assert finding.status == check_base.OK
    assert f"keys directory {installation.keyring.parent}" in finding.message


def test_it_says_the_keys_come_from_systemd_credentials(
    installation: Installation, settings: Any
) -> None:
    # What settings decide when $CREDENTIALS_DIRECTORY holds the keys (tested in
    # tests/test_keys_apart.py with real processes).
    settings.VIGIE_KEYS_SOURCE = "systemd credentials"
    finding = findings()["keyring.location"]
    assert finding.status == check_base.OK
    assert f"systemd credentials {installation.keyring.parent}" in finding.message


def test_it_fails_keys_inside_vigie_home(installation: Installation, settings: Any) -> None:
    settings.VIGIE_HOME = installation.keyring.parent.parent
    assert_fails("keyring.location", "inside VIGIE_HOME", fix="vigie keys move")


def test_it_fails_keys_reached_through_a_symlink_into_vigie_home(
    installation: Installation, settings: Any, tmp_path: Path
) -> None:
    inside = installation.home / "keys"
    installation.keyring.parent.rename(inside)
    link = tmp_path / "etc-keys"
    link.symlink_to(inside)
    settings.VIGIE_KEYS_DIR = link
    settings.VIGIE_KEYRING_FILE = link / "keyring.json"
    settings.VIGIE_SECRET_KEY_DEFAULT_FILE = link / "secret_key"
    assert_fails("keyring.location", "inside VIGIE_HOME", fix="vigie keys move")


def test_it_fails_keys_left_in_the_old_place(installation: Installation) -> None:
    # Upgraded but not moved: the settings point elsewhere, the old files still sit in the
    # data tree, where serving VIGIE_HOME would give them away.
    old = installation.home / "keyring"
    old.mkdir(mode=0o700)
    (old / "keyring.json").write_bytes(installation.keyring.read_bytes())
    finding = assert_fails("keyring.location", "inside VIGIE_HOME", fix="vigie keys move")
    assert str(old / "keyring.json") in finding.message


def test_it_reports_sqlite_in_production_unless_allowed(
    installation: Installation, settings: Any
) -> None:
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("this run's database is PostgreSQL")
    settings.VIGIE_ALLOW_SQLITE = False
    assert_fails("database.engine", "SQLite", fix="VIGIE_ALLOW_SQLITE=1")


def test_it_reports_a_missing_table(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nft, "table_exists", lambda: False)
    assert_fails("guard.nftables", "inet vigie", fix="vigie guard run")


def test_it_reports_nft_missing(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable() -> bool:
        raise nft.NftUnavailable("`nft` is not installed (Debian package `nftables`)")

    monkeypatch.setattr(nft, "table_exists", unavailable)
    assert_fails("guard.nftables", "not installed", fix="install nftables")


def test_it_reports_an_undeclared_public_listener(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = (
        snapshot.ListeningSocket("0.0.0.0", 8443, "tcp", "granian", 4242),
        snapshot.ListeningSocket("0.0.0.0", 5432, "tcp", "postgres", 99),
    )
    monkeypatch.setattr(snapshot, "listening_sockets", lambda: sockets)
    assert_fails("guard.listeners", "0.0.0.0:5432", "postgres", fix="[[listener]]")


def test_it_reports_no_recent_backup(installation: Installation) -> None:
    from vigie.audit.models import AuditEvent

    # The audit table refuses UPDATE: rewind time for the check instead.
    later = timezone.now() + timedelta(hours=27)
    found = {f.id: f for f in checks.run_all(check_base.Context(now=later))}
    assert found["backup"].status == check_base.FAILURE
    assert "no backup in the last day" in found["backup"].message
    assert "vigie backup create" in found["backup"].fix
    assert AuditEvent.objects.filter(action="backup.create").exists()


def test_it_reports_a_failed_verification(installation: Installation) -> None:
    record("backup.verify", outcome="failure", extra={"snapshot": "s2", "problems": 3})
    assert_fails("backup.verified", "verification failed", "s2", fix="vigie backup verify")


def test_it_warns_of_a_late_audit_checkpoint(installation: Installation) -> None:
    record("login.failure", extra={})
    later = timezone.now() + timedelta(minutes=5)
    found = {f.id: f for f in checks.run_all(check_base.Context(now=later))}
    assert found["audit.checkpoint"].status == check_base.WARNING
    assert "vigie audit watch" in found["audit.checkpoint"].fix


def test_it_refuses_a_head_row_claiming_its_tail_is_signed(installation: Installation) -> None:
    # Database access alone: the head row says everything is checkpointed; the file says not.
    record("login.failure", extra={})
    AuditHead.objects.filter(pk=1).update(checkpoint_seq=F("seq"))
    later = timezone.now() + timedelta(minutes=5)
    found = {f.id: f for f in checks.run_all(check_base.Context(now=later))}
    assert found["audit.checkpoint"].status == check_base.WARNING
    assert "1 audit event(s) have waited" in found["audit.checkpoint"].message


def test_a_crashing_check_is_a_failure_not_a_traceback(installation: Installation) -> None:
    def broken(ctx: check_base.Context) -> check_base.Finding:
        raise RuntimeError("disk on fire\nsecond line")

    found = checks.run_all(check_base.Context(), [("broken", broken)])
    assert found == [
        check_base.Finding(
            "broken",
            check_base.FAILURE,
            "the check itself failed: RuntimeError: disk on fire",
            found[0].fix,
        )
    ]


def test_djangos_own_options_run_djangos_check(installation: Installation) -> None:
    out = StringIO()
    call_command("check", "--deploy", stdout=out)
    assert "System check identified no issues" in out.getvalue()
    assert "keyring" not in out.getvalue()


@pytest.mark.netns
def test_it_reads_the_real_vigie_table(
    installation: Installation, monkeypatch: pytest.MonkeyPatch, netns: str
) -> None:
    monkeypatch.undo()  # the real nft and sockets again; nft runs in the test's namespace
    assert netns == nft.NETNS
    ctx = check_base.Context()
    absent = checks_services.check_nftables(ctx)
    assert absent.status == check_base.FAILURE
    assert "inet vigie" in absent.message
    nft.install(load_policy(installation.policy))
    assert checks_services.check_nftables(ctx).status == check_base.OK


@pytest.mark.parametrize(
    ("version", "fixed"),
    [
        ((3, 40, 1), False),  # Debian 12's
        ((3, 44, 5), False),
        ((3, 44, 6), True),  # a backport
        ((3, 45, 0), False),
        ((3, 50, 4), False),
        ((3, 50, 7), True),  # a backport
        ((3, 51, 2), False),
        ((3, 51, 3), True),
        ((3, 54, 1), True),
    ],
)
def test_it_knows_which_sqlite_libraries_can_lose_a_write(
    version: tuple[int, int, int], fixed: bool
) -> None:
    assert checks_storage.sqlite_has_wal_reset_fix(version) is fixed


def test_it_warns_about_a_sqlite_library_with_the_wal_reset_bug(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks_storage, "_sqlite_version", lambda: (3, 40, 1))
    found = findings()
    if connection.vendor != "sqlite":
        assert "database.sqlite_library" not in found  # PostgreSQL: not concerned
        return
    finding = found["database.sqlite_library"]
    assert finding.status == check_base.WARNING
    assert "3.40.1" in finding.message
    assert "3.51.3" in finding.message
    assert "PostgreSQL" in finding.fix
    code, output = run_check()
    assert code == 0  # a warning: SQLite stays usable for a small site
    assert "WARN  database.sqlite_library" in output
    monkeypatch.setattr(checks_storage, "_sqlite_version", lambda: (3, 51, 3))
    assert findings()["database.sqlite_library"].status == check_base.OK


def _listen_as_mllp(*options: str) -> subprocess.Popen[str]:
    """A real process whose command line is `... intake mllp OPTIONS`, listening on every
    address: what an older Vigie (or a hand-edited unit) left running."""
    program = (
        "import socket, sys, time\n"
        "s = socket.socket()\n"
        "s.bind(('0.0.0.0', 0))\n"
        "s.listen()\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program, "intake", "mllp", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip().isdigit()
    return process


def test_attack_an_mllp_listener_beyond_loopback_without_mutual_tls_fails_the_check(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _listen_as_mllp("--host", "0.0.0.0", "--port", "0")
    try:
        ours = [plain.pid]
        monkeypatch.setattr(
            checks_services,
            "mllp_listeners",
            lambda: [m for m in REAL_MLLP_LISTENERS() if m.pid in ours],
        )
        finding = assert_fails("intake.mllp", f"pid {plain.pid}", "0.0.0.0:", fix="--tls-client-ca")
        assert "without mutual TLS" in finding.message
        code, _out = run_check()
        assert code == 1
    finally:
        plain.kill()
        plain.wait()
    mutual = _listen_as_mllp(
        "--host",
        "0.0.0.0",
        "--tls-cert",
        "s.crt",
        "--tls-key",
        "s.key",
        "--tls-client-ca",
        "ca.crt",
    )
    try:
        ours[:] = [mutual.pid]
        assert findings()["intake.mllp"].status == check_base.OK
    finally:
        mutual.kill()
        mutual.wait()


# --- data private to the Vigie user ----------------------------------------------------------


@pytest.fixture
def sqlite_file(installation: Installation, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real SQLite file at its production place (the suite's own database may be in memory
    or PostgreSQL), created as `vigie` now creates it: 0600."""
    database = installation.home / "vigie.sqlite3"
    fd = os.open(database, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    (installation.home / "blobs").mkdir(mode=0o700)
    monkeypatch.setattr(checks_storage, "sqlite_database_file", lambda: database)
    return database


def test_private_data_passes(sqlite_file: Path) -> None:
    assert findings()["data.permissions"].status == check_base.OK


@pytest.mark.parametrize(
    ("where", "mode", "fix"),
    [
        ("vigie.sqlite3", 0o644, "chmod 600"),
        ("vigie.sqlite3-wal", 0o640, "chmod 600"),
        ("blobs", 0o755, "chmod 700"),
        ("", 0o750, "chmod 700"),
    ],
    ids=["database", "wal", "blob-store", "home"],
)
def test_attack_data_readable_by_other_local_accounts_fails_the_check(
    sqlite_file: Path, installation: Installation, where: str, mode: int, fix: str
) -> None:
    path = installation.home / where if where else installation.home
    if not path.exists():
        path.touch()
    path.chmod(mode)
    finding = assert_fails("data.permissions", str(path), f"{mode:04o}", fix=f"{fix} {path}")
    assert "group/others" in finding.message


def test_attack_vigie_started_with_umask_022_still_creates_private_files(
    tmp_path: Path,
) -> None:
    # Started by hand or from cron (no systemd UMask=0077): the home it creates and the keys
    # and database it writes must not be readable by the other local accounts.
    home = tmp_path / "var" / "home"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vigie.settings",
        "VIGIE_MODE": "test",
        "VIGIE_HOME": str(home),
        "VIGIE_KEYS_DIR": str(tmp_path / "keys"),
    }
    # The default database: SQLite in VIGIE_HOME.
    for name in ("VIGIE_SECRET_KEY", "VIGIE_SECRET_KEY_FILE", "VIGIE_BLOB_DIR", "DATABASE_URL"):
        env.pop(name, None)
    script = "import os, sys; os.umask(0o022); from vigie.cli import main; main(sys.argv[1:])"
    for argv in (["keys", "init"], ["migrate", "--verbosity", "0"]):
        done = subprocess.run(
            [sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert oct(home.stat().st_mode & 0o777) == oct(0o700)
    database = home / "vigie.sqlite3"
    assert database.exists()
    assert oct(database.stat().st_mode & 0o777) == oct(0o600)
