"""Backups a clinic can restore: real `vigie` processes, real files, both database engines.

1. The drill: seed, export the keys, back up, lose VIGIE_HOME (and the database) entirely,
   restore, then prove the restored installation independently of the restore's own check:
   every document decrypts to the very bytes that were ingested, the audit chain verifies,
   fsck is clean. Restore refuses a non-empty VIGIE_HOME and a wrong passphrase first.
2. Backup under load: 4 doctors read over HTTP through `vigie serve` (audited reads, so the
   audit chain moves during the backup) and 2 processes ingest while two backups run; the
   last snapshot restores into a new installation that holds a consistent point in time.
3. Ransomware: every blob overwritten in place; the portal refuses to serve them (500, no
   byte of the document, a `vault.integrity` alert), fsck names them, and the backup brings
   every document back byte for byte.

Tampering with a backup (blob, manifest, database) is covered by in-process unit tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.browser.live import HttpClient, Installation, Login, stop_process_group
from tests.conftest import System, _base_env, keys_dir

pytestmark = pytest.mark.slow

PASSPHRASE = "vigie backup drill passphrase"
PATIENT_IPP = "IPPBACKUP1"
_MARK = "@@VIGIE-BACKUP@@"
MIB = 1024 * 1024

# Sizes around the vault's 64 KiB chunk and past 1 MiB (several chunks, a short last one).
SIZES = [
    1,
    17,
    1000,
    4096,
    65535,
    65536,
    65537,
    131072 + 5,
    300_000,
    MIB - 1,
    MIB + 1,
    2 * MIB + 12345,
] + [2000 + 7919 * i for i in range(18)]


@dataclass
class Seeded:
    hashes: dict[str, str]  # document id -> SHA-256 of the bytes ingested
    markers: dict[str, bytes]  # document id -> bytes only that document contains
    doctors: list[Login] = field(default_factory=list)


def _content(i: int, size: int) -> bytes:
    head = f"%PDF-1.4 backup drill document {i} ".encode()
    body = head + os.urandom(max(0, size - len(head)))
    return body[:size]


def _shell_json(system: System, code: str) -> Any:
    out = system.run("shell", "--no-imports", "-c", code).stdout
    for line in out.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    raise AssertionError(f"no {_MARK} line in the shell's output:\n{out}")


def _seed(system: System, tmp_path: Path, *, doctors: int = 0) -> Seeded:
    """A patient, one document per SIZES entry, some audit events and `doctors` doctors."""
    folder = tmp_path / "seed"
    folder.mkdir()
    files: list[str] = []
    hashes: list[str] = []
    markers: list[bytes] = []
    for i, size in enumerate(SIZES):
        content = _content(i, size)
        path = folder / f"{i:02d}.pdf"
        path.write_bytes(content)
        files.append(str(path))
        hashes.append(hashlib.sha256(content).hexdigest())
        markers.append(content[-32:] if size >= 64 else content)
    names = [f"dr-backup-{secrets.token_hex(3)}-{i}" for i in range(doctors)]
    passwords = [secrets.token_urlsafe(16) for _ in names]
    code = f"""
import datetime, json
from base64 import b32encode
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
from vigie.audit.log import record
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import CareRelationship, CareRole, Patient
patient = Patient.objects.create(ipp={PATIENT_IPP!r}, family_name="SAUVEGARDE",
    given_names="Test", birth_date="1970-01-01")
ids = []
for i, path in enumerate({files!r}):
    with open(path, "rb") as handle:
        document = ingest(patient, DocumentMeta(kind="other", title=f"Drill {{i}}",
            clinical_date=datetime.date(2026, 1, 1), source_system="BACKUP-DRILL"), handle)
    ids.append(document.pk)
for n in range(5):
    record("document.read", outcome="success", reason="backup drill", extra={{"n": n}})
totp = []
for name, password in zip({names!r}, {passwords!r}):
    user = User(username=name, first_name="Backup", last_name=name, role=Role.DOCTOR)
    user.set_password(password)
    user.save()
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    CareRelationship.objects.create(doctor=user, patient=patient, role=CareRole.TREATING)
    totp.append(b32encode(device.bin_key).decode("ascii"))
print({_MARK!r} + json.dumps(dict(ids=ids, totp=totp)))
"""
    result = _shell_json(system, code)
    ids: list[str] = result["ids"]
    assert len(set(ids)) == len(SIZES)
    return Seeded(
        hashes=dict(zip(ids, hashes, strict=True)),
        markers=dict(zip(ids, markers, strict=True)),
        doctors=[
            Login(username=n, password=p, role="doctor", totp_secret=s)
            for n, p, s in zip(names, passwords, result["totp"], strict=True)
        ],
    )


# An independent check of a (restored) installation: decrypt every row ourselves and hash the
# bytes, then compare with the hashes recorded when the documents were made, not the rows'.
_VERIFY = """
import hashlib, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
from vigie.startup import preflight
preflight()
import django
django.setup()
from vigie.audit.models import AuditEvent
from vigie.records.content import stream_verified
from vigie.records.models import Document
problems, digests = {}, {}
for document in Document.objects.order_by("pk"):
    digest = hashlib.sha256()
    try:
        for chunk in stream_verified(document):
            digest.update(chunk)
    except Exception as exc:
        problems[document.pk] = repr(exc)
        continue
    digests[document.pk] = digest.hexdigest()
drill_events = AuditEvent.objects.filter(reason="backup drill").count()
failed_reads = AuditEvent.objects.filter(action="document.read.failed").count()
from vigie.alerts.models import Alert
alerts = [dict(severity=a.severity, document=a.details.get("document_id"))
          for a in Alert.objects.filter(kind="vault.integrity")]
# The same commands `vigie audit verify` and `vigie vault fsck` run, in this process (a
# Python start-up each saved); CommandError carries the exit code the CLI would give.
import io
from django.core.management import CommandError, call_command
commands = {}
for name, args in (("audit", ["audit", "verify"]), ("fsck", ["vault", "fsck"])):
    out = io.StringIO()
    try:
        call_command(*args, stdout=out)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        out.write(str(exc))
    commands[name] = dict(code=code, out=out.getvalue())
print("@@VIGIE-BACKUP@@" + json.dumps(dict(problems=problems, digests=digests,
    drill_events=drill_events, failed_reads=failed_reads, alerts=alerts, commands=commands)))
"""


def _decrypt_all(system: System) -> dict[str, Any]:
    """{problems: {id: error}, digests: {id: SHA-256 of the decrypted bytes}, drill_events,
    commands: {audit|fsck: {code, out}}} (audit verify and vault fsck)."""
    result = subprocess.run(
        [sys.executable, "-c", _VERIFY],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(_MARK), result.stdout
    report: dict[str, Any] = json.loads(line[len(_MARK) :])
    return report


# --- databases: an empty one to restore into, and a direct look at what a live one holds ---


@pytest.fixture(scope="module")
def _migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One installation with keys and a migrated database, made once for this module."""
    home = tmp_path_factory.mktemp("template") / "home"
    env = _base_env(home)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        name = f"vigie_tpl_{secrets.token_hex(4)}"
        _pg_admin(url, f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = _database_url(url, name)
    template = System(home=home, env=env)
    try:
        template.run("keys", "init")
        template.run("migrate", "--no-input")
        yield template
    finally:
        if url.startswith("postgres"):
            _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def system(_migrated: System, tmp_path: Path) -> Iterator[System]:
    """Like conftest's `system` (its own VIGIE_HOME and database), but a copy of a migrated
    template: `keys init` + `migrate` cost 15-25 s per test on this machine, a copy nothing."""
    home = tmp_path / "home"
    shutil.copytree(_migrated.home, home, symlinks=True)
    env = {**_migrated.env, "VIGIE_HOME": str(home)}
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        name = f"vigie_sys_{secrets.token_hex(4)}"
        template = urlsplit(_migrated.env["DATABASE_URL"]).path.lstrip("/")
        _pg_admin(url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        env["DATABASE_URL"] = _database_url(url, name)
    try:
        yield System(home=home, env=env)
    finally:
        if url.startswith("postgres"):
            _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def _is_postgres(system: System) -> bool:
    return system.env.get("DATABASE_URL", "").startswith("postgres")


def _admin_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))


def _pg_admin(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def empty_target(tmp_path: Path) -> Iterator[Callable[[System, str], System]]:
    """Makes a new, empty installation target (VIGIE_HOME and, on PostgreSQL, a database)."""
    created: list[str] = []

    def make(system: System, name: str) -> System:
        home = tmp_path / name
        env = {**system.env, "VIGIE_HOME": str(home), "VIGIE_KEYS_DIR": str(keys_dir(home))}
        if _is_postgres(system):
            db = f"vigie_restore_{secrets.token_hex(4)}"
            _pg_admin(system.env["DATABASE_URL"], f'CREATE DATABASE "{db}"')
            created.append(db)
            env["DATABASE_URL"] = _database_url(system.env["DATABASE_URL"], db)
        return System(home=tmp_path / name, env=env)

    yield make
    url = os.environ.get("DATABASE_URL", "")
    for db in created:
        _pg_admin(url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _query(system: System, sql: str) -> list[tuple[Any, ...]]:
    """Read the live database directly (no Django start-up: cheap enough to do under load)."""
    if _is_postgres(system):
        import psycopg

        with psycopg.connect(system.env["DATABASE_URL"]) as conn:
            return list(conn.execute(sql).fetchall())
    path = system.home / "vigie.sqlite3"
    lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return lite.execute(sql).fetchall()
    finally:
        lite.close()


def _document_ids(system: System) -> set[str]:
    return {row[0] for row in _query(system, "SELECT id FROM records_document")}


def _table_count(system: System) -> int:
    rows = _query(
        system,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    return int(rows[0][0])


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with the SHA-256 of its content (SQLite's -shm index aside)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith("-shm")
    }


def _backup(system: System, dest: Path) -> str:
    out = system.run("backup", "create", str(dest)).stdout
    assert out.startswith("snapshot "), out
    return out.split()[1].rstrip(":")


def _restore(
    target: System, dest: Path, keys: Path, passphrase: str = PASSPHRASE
) -> subprocess.CompletedProcess[str]:
    return target.run(
        "backup",
        "restore",
        str(dest),
        "--keys",
        str(keys),
        check=False,
        VIGIE_KEYS_PASSPHRASE=passphrase,
    )


def _prove_restored(
    target: System, expected: dict[str, str], *, exact: bool, cli: bool = False
) -> dict[str, Any]:
    """Independent checks of a restored installation; returns the verification report.

    `cli`: also run `vigie audit verify` and `vigie vault fsck` as processes of their own
    (the same commands already ran inside the checking process).
    """
    assert not (target.home / "RESTORING").exists()
    report = _decrypt_all(target)
    assert report["problems"] == {}, report["problems"]
    digests: dict[str, str] = report["digests"]
    if exact:
        assert set(digests) == set(expected)
    else:
        assert set(expected) <= set(digests), set(expected) - set(digests)
    differ = [pk for pk, sha in expected.items() if digests[pk] != sha]
    assert differ == [], f"bytes differ from the ones ingested: {differ}"
    audit, fsck = report["commands"]["audit"], report["commands"]["fsck"]
    assert audit["code"] == 0, audit["out"]
    assert fsck["code"] == 0, fsck["out"]
    assert f"{len(digests)} document(s) checked" in fsck["out"], fsck["out"]
    assert "vault OK" in fsck["out"]
    if cli:
        for args in (["audit", "verify"], ["vault", "fsck"]):
            result = target.run(*args, check=False)
            assert result.returncode == 0, result.stdout + result.stderr
    return report


# --- 1. the drill ---------------------------------------------------------------------------


def test_drill_lose_everything_then_restore_every_byte(system: System, tmp_path: Path) -> None:
    seeded = _seed(system, tmp_path)
    keys = tmp_path / "safe" / "vigie-keys.export"
    keys.parent.mkdir()
    system.run("keys", "export", str(keys), VIGIE_KEYS_PASSPHRASE=PASSPHRASE)
    dest = tmp_path / "backup-disk"
    snapshot = _backup(system, dest)
    signed = json.loads((dest / "snapshots" / snapshot / "manifest.json").read_bytes())
    assert signed["manifest"]["documents"] == len(SIZES)
    blob_files = list((dest / "blobs").rglob("*.blob"))
    assert len(blob_files) == len(SIZES)
    # The backup holds ciphertext only.
    for document_id, marker in seeded.markers.items():
        if len(marker) >= 32:
            blob = (dest / "blobs").rglob(f"{document_id}.blob")
            assert marker not in next(blob).read_bytes()

    # Over the live installation: refused, and nothing changed (files and database).
    rows_before = _query(system, "SELECT count(*), max(seq) FROM audit_auditevent")
    tree_before = _tree(system.home)
    refused = _restore(system, dest, keys)
    assert refused.returncode != 0
    assert f"VIGIE_HOME {system.home} is not empty" in refused.stderr, refused.stderr
    assert _tree(system.home) == tree_before
    assert _query(system, "SELECT count(*), max(seq) FROM audit_auditevent") == rows_before
    assert _document_ids(system) == set(seeded.hashes)

    # The disaster: VIGIE_HOME and the keys folder gone, the database replaced by an empty one.
    shutil.rmtree(system.home)
    shutil.rmtree(system.env["VIGIE_KEYS_DIR"])
    if _is_postgres(system):
        url = system.env["DATABASE_URL"]
        name = urlsplit(url).path.lstrip("/")
        _pg_admin(url, f'DROP DATABASE "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')

    wrong = _restore(system, dest, keys, "not the passphrase at all")
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "wrong passphrase" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert not system.home.exists() or not any(system.home.iterdir())
    if _is_postgres(system):
        assert _table_count(system) == 0

    restored = _restore(system, dest, keys)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored snapshot {snapshot}: {len(SIZES)} document(s)" in restored.stdout
    report = _prove_restored(system, seeded.hashes, exact=True, cli=True)
    assert report["drill_events"] == 5
    # The keys from the export went to the keys folder, apart from the restored data.
    restored_keys = Path(system.env["VIGIE_KEYS_DIR"])
    assert sorted(p.name for p in restored_keys.iterdir()) == [
        "audit-signing.key",
        "keyring.json",
        "secret_key",
    ]
    assert not {"keyring.json", "secret_key", "audit-signing.key"} & {
        p.name for p in system.home.rglob("*")
    }


# --- 2. backup under load -------------------------------------------------------------------

# A doctor's browser, reduced: GET every document's content URL again and again; print one
# line per read (`OK id` or `FAIL id why`) until the stop file appears.
_READER = """
import hashlib, http.client, json, os, sys
base, cookie, expected_file, stop = sys.argv[1:5]
expected = json.load(open(expected_file))
host, port = base.split("//")[1].split(":")
while not os.path.exists(stop):
    for pk, sha in expected.items():
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("GET", f"/documents/{pk}/content", headers={"Cookie": cookie})
            response = conn.getresponse()
            body = response.read()
            conn.close()
        except Exception as exc:
            print(f"FAIL {pk} {exc!r}", flush=True)
            continue
        if response.status == 200 and hashlib.sha256(body).hexdigest() == sha:
            print(f"OK {pk}", flush=True)
        else:
            print(f"FAIL {pk} status {response.status}, {len(body)} bytes", flush=True)
"""


class Tail:
    """Collects a process's stdout lines with the moment each arrived."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def between(self, start: float, end: float, prefix: str) -> int:
        return sum(
            1 for t, line in list(self.lines) if start <= t <= end and line.startswith(prefix)
        )

    def matching(self, prefix: str) -> list[str]:
        return [line for _, line in list(self.lines) if line.startswith(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.matching(prefix)) < count:
            assert self.process.poll() is None, (
                f"exited {self.process.returncode}: {self.lines[-5:]}"
            )
            assert time.monotonic() < deadline, f"no {count} {prefix!r} lines: {self.lines[-5:]}"
            time.sleep(0.05)

    def join(self) -> None:
        self._thread.join(timeout=30)


def _acked(tail: Tail) -> dict[str, str]:
    acked = {}
    for line in tail.matching("ACK "):
        parts = line.split()
        if len(parts) == 3 and len(parts[2]) == 64:
            acked[parts[1]] = parts[2]
    return acked


def test_backup_while_doctors_read_and_labs_ingest_restores_a_consistent_point(
    system: System,
    tmp_path: Path,
    empty_target: Callable[[System, str], System],
) -> None:
    seeded = _seed(system, tmp_path, doctors=4)
    keys = tmp_path / "vigie-keys.export"
    system.run("keys", "export", str(keys), VIGIE_KEYS_PASSPHRASE=PASSPHRASE)
    installation = Installation(root=tmp_path, env=system.env)
    expected_file = tmp_path / "expected.json"
    expected_file.write_text(json.dumps(seeded.hashes))
    stop = tmp_path / "stop"
    processes: list[subprocess.Popen[str]] = []
    try:
        server = installation.start_server()
        # Every doctor logs in before any reader starts: a login (Argon2, TOTP) competing
        # with three readers on a loaded machine could outlast the client's timeout.
        cookies = []
        for doctor in seeded.doctors:
            client = HttpClient(server.base_url)
            client.login(installation, doctor)
            cookies.append("; ".join(f"{k}={v}" for k, v in client.cookies.items()))
        readers: list[Tail] = []
        for cookie in cookies:
            process = system.popen(
                [
                    sys.executable,
                    "-c",
                    _READER,
                    server.base_url,
                    cookie,
                    str(expected_file),
                    str(stop),
                ],
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            processes.append(process)
            readers.append(Tail(process))
        ingesters: list[Tail] = []
        for _ in range(2):
            process = system.popen(
                [sys.executable, "-m", "tests.scripts.ingest_loop", PATIENT_IPP],
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            processes.append(process)
            ingesters.append(Tail(process))
        for tail in readers:
            tail.wait_for("OK ", 1)
        for tail in ingesters:
            tail.wait_for("ACK ", 1)

        dest = tmp_path / "backup-disk"
        windows: list[tuple[float, float]] = []
        for _ in range(2):
            acked_before = {pk for tail in ingesters for pk in _acked(tail)}
            before = _document_ids(system)
            start = time.monotonic()
            snapshot = _backup(system, dest)
            end = time.monotonic()
            after = _document_ids(system)
            windows.append((start, end))
        for tail in [*readers, *ingesters]:
            assert tail.process.poll() is None, f"a client died: {tail.lines[-5:]}"
    finally:
        stop.touch()
        for process in processes:
            stop_process_group(process)
        installation.close()

    # Everybody worked while the backups ran, and no read ever failed.
    for tail in readers:
        tail.join()
        assert tail.matching("FAIL") == [], tail.matching("FAIL")[:5]
        assert sum(tail.between(s, e, "OK ") for s, e in windows) > 0, "a reader stalled"
    for tail in ingesters:
        tail.join()
        assert sum(tail.between(s, e, "ACK ") for s, e in windows) > 0, "an ingester stalled"
    acked = {pk: sha for tail in ingesters for pk, sha in _acked(tail).items()}
    assert len(acked) > len(acked_before), "nothing was ingested during the last backup"
    assert len(before) < len(after)
    assert len([p for p in (dest / "snapshots").iterdir() if not p.name.startswith(".")]) == 2

    target = empty_target(system, "restored")
    restored = _restore(target, dest, keys)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored snapshot {snapshot}" in restored.stdout
    # Every document acknowledged before the backup began is there, intact; every restored
    # one existed when it ended (a point in time between the two).
    # Every document acknowledged before the last backup began is there, intact; every
    # restored one existed when it ended: the snapshot is one point in time between the two.
    assert acked_before <= before
    required = {**seeded.hashes, **{pk: acked[pk] for pk in acked_before}}
    report = _prove_restored(target, required, exact=False)
    digests: dict[str, str] = report["digests"]
    assert before <= set(digests) <= after, (len(before), len(digests), len(after))
    # Those ingested while the backup ran and caught by it hold the bytes the lab sent.
    late = [pk for pk in set(digests) - before if pk in acked]
    assert [pk for pk in late if digests[pk] != acked[pk]] == []


# --- 3. ransomware --------------------------------------------------------------------------


def test_ransomware_overwritten_blobs_are_refused_then_restored(
    system: System,
    tmp_path: Path,
    empty_target: Callable[[System, str], System],
) -> None:
    seeded = _seed(system, tmp_path, doctors=1)
    keys = tmp_path / "vigie-keys.export"
    system.run("keys", "export", str(keys), VIGIE_KEYS_PASSPHRASE=PASSPHRASE)
    dest = tmp_path / "backup-disk"
    snapshot = _backup(system, dest)

    # As the vigie user would: open each blob for writing and fill it with noise, same size.
    blobs = sorted((system.home / "blobs").rglob("*.blob"))
    assert len(blobs) == len(SIZES)
    for path in blobs:
        size = path.stat().st_size
        path.chmod(0o600)
        with path.open("r+b") as handle:
            handle.write(os.urandom(size))
        assert path.stat().st_size == size

    installation = Installation(root=tmp_path, env=system.env)
    try:
        server = installation.start_server()
        client = HttpClient(server.base_url)
        client.login(installation, seeded.doctors[0])
        for document_id, marker in seeded.markers.items():
            reply = client.request("GET", f"/documents/{document_id}/content")
            assert reply.status == 500, (document_id, reply.status)
            assert not reply.body.startswith(b"%PDF")
            assert b"%PDF" not in reply.body
            assert marker not in reply.body
        assert server.process.poll() is None, "the server died"
    finally:
        installation.close()
    damaged = _decrypt_all(system)
    assert set(damaged["problems"]) == set(seeded.hashes), damaged["problems"]
    assert damaged["digests"] == {}
    assert {a["document"] for a in damaged["alerts"]} == set(seeded.hashes)
    assert {a["severity"] for a in damaged["alerts"]} == {"critical"}
    assert damaged["failed_reads"] == len(SIZES)
    fsck = damaged["commands"]["fsck"]
    assert fsck["code"] != 0, fsck["out"]
    corrupt = [line for line in fsck["out"].splitlines() if line.startswith("CORRUPT")]
    assert len(corrupt) == len(SIZES), fsck["out"]
    assert all(any(pk in line for line in corrupt) for pk in seeded.hashes)

    target = empty_target(system, "restored")
    restored = _restore(target, dest, keys)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored snapshot {snapshot}: {len(SIZES)} document(s)" in restored.stdout
    report = _prove_restored(target, seeded.hashes, exact=True)
    assert report["alerts"] == []  # the backup predates the attack
