"""The audit log as the server sees it: real `vigie serve`, real HTTP, real processes.

Every read of `/documents/<id>/content` is audited before its first byte leaves. Through the
whole stack (granian, middleware, sessions, the one door), this checks that 8 doctors
reading concurrently leave exactly one `document.read` per response in a gapless log that
`vigie audit verify` accepts; that a server killed with SIGKILL mid-burst has kept an event
for every response a client fully received; and that when the log cannot be written the
door answers 503 without a byte of the document while the server stays up.

VIGIE_AUDIT_SERVER_READS sets the reads per process of the first test (default 1,000, so
8,000 reads: about 2-3 minutes at the server's ~60 requests/s).
"""

from __future__ import annotations

import hashlib
import http.client
import multiprocessing
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.browser.live import (  # noqa: F401 - live_fixture is the shared fixture
    VIGIE,
    HttpClient,
    Installation,
    Live,
    Login,
    http_get,
    live_fixture,
)

pytestmark = pytest.mark.slow

PROCESSES = 8
READS = int(os.environ.get("VIGIE_AUDIT_SERVER_READS", "1000"))

_MARK = "@@VIGIE-AUDIT@@"


@dataclass(frozen=True)
class Target:
    document: int
    size: int
    path: str


def _target(live: Live) -> Target:
    document = live.installation.facts["documents"][0]
    return Target(document["id"], document["size"], f"/documents/{document['id']}/content")


def _doctors(installation: Installation, count: int, document: int) -> list[Login]:
    """`count` new doctors, each with its own authenticator, treating the document's patient."""
    names = [f"audit-{secrets.token_hex(4)}-{i}" for i in range(count)]
    passwords = [secrets.token_urlsafe(16) for _ in names]
    code = f"""
import json
from base64 import b32encode
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
from vigie.records.models import CareRelationship, CareRole, Document
patient = Document.objects.get(pk={document!r}).patient
secrets = []
for name, password in zip({names!r}, {passwords!r}):
    user = User(username=name, first_name="Audit", last_name=name, role=Role.DOCTOR)
    user.set_password(password)
    user.save()
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    CareRelationship.objects.create(doctor=user, patient=patient, role=CareRole.TREATING)
    secrets.append(b32encode(device.bin_key).decode("ascii"))
print({_MARK!r} + json.dumps(secrets))
"""
    totp = installation.shell_json(code, _MARK)
    return [
        Login(username=n, password=p, role="doctor", totp_secret=s)
        for n, p, s in zip(names, passwords, totp, strict=True)
    ]


def _audit_state(installation: Installation, document: int, usernames: list[str]) -> dict[str, int]:
    code = f"""
import json
from django.db.models import Count, Max, Min
from vigie.audit.models import AuditEvent
whole = AuditEvent.objects.aggregate(count=Count("seq"), low=Min("seq"), high=Max("seq"))
reads = AuditEvent.objects.filter(
    action="document.read", document_id=str({document!r}), actor_username__in={usernames!r},
    outcome="success",
).count()
print({_MARK!r} + json.dumps(dict(whole, reads=reads)))
"""
    state: dict[str, int] = installation.shell_json(code, _MARK)
    return state


def _verify(installation: Installation) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIGIE, "audit", "verify"],
        env=installation.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _read(base_url: str, path: str, cookies: dict[str, str]) -> tuple[int, int | None, bytes]:
    """One GET of the content URL: (status, announced length, body as received)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(
            "GET", path, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        )
        response = conn.getresponse()
        length = response.getheader("Content-Length")
        return response.status, int(length) if length else None, response.read()
    finally:
        conn.close()


def _reader(
    base_url: str, path: str, cookies: dict[str, str], reads: int, size: int
) -> tuple[int, list[str], list[str]]:
    """Runs in its own process: `reads` reads; (full 200 bodies, body digests, problems)."""
    full = 0
    digests: set[str] = set()
    problems: list[str] = []
    for i in range(reads):
        try:
            status, length, body = _read(base_url, path, cookies)
        except (OSError, http.client.HTTPException) as exc:
            problems.append(f"read {i}: {exc!r}")
            continue
        if status == 200 and length == size and len(body) == size and body.startswith(b"%PDF"):
            full += 1
            digests.add(hashlib.sha256(body).hexdigest())
        else:
            problems.append(f"read {i}: {status}, Content-Length {length}, {len(body)} bytes")
    return full, sorted(digests), problems[:20]


def test_eight_processes_reading_through_the_server_leave_a_gapless_verified_log(
    live: Live,
) -> None:
    installation = live.installation
    target = _target(live)
    doctors = _doctors(installation, PROCESSES, target.document)
    jars = []
    for doctor in doctors:
        client = HttpClient(live.base_url)
        client.login(installation, doctor)
        jars.append(dict(client.cookies))
    assert len({jar["sessionid"] for jar in jars}) == PROCESSES
    usernames = [d.username for d in doctors]
    assert _audit_state(installation, target.document, usernames)["reads"] == 0

    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.starmap(
            _reader,
            [(live.base_url, target.path, jar, READS, target.size) for jar in jars],
        )
    elapsed = time.monotonic() - started
    print(f"{PROCESSES * READS} reads through the server in {elapsed:.1f} s")

    problems = [p for _, _, found in results for p in found]
    assert not problems, problems
    assert [full for full, _, _ in results] == [READS] * PROCESSES
    assert len({d for _, digests, _ in results for d in digests}) == 1, "bodies differ"

    state = _audit_state(installation, target.document, usernames)
    assert state["reads"] == PROCESSES * READS
    assert state["high"] - state["low"] + 1 == state["count"], f"gap in the audit log: {state}"
    verify = _verify(installation)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sigkill_during_a_read_burst_loses_no_event_of_a_fully_sent_response(live: Live) -> None:
    installation = live.installation
    target = _target(live)
    (doctor,) = _doctors(installation, 1, target.document)
    server = installation.start_server()  # our own: the shared one must survive
    client = HttpClient(server.base_url)
    client.login(installation, doctor)
    cookies = dict(client.cookies)

    full = 0
    attempts = 0
    stop = threading.Event()

    def burst() -> None:
        nonlocal full, attempts
        while not stop.is_set():
            attempts += 1
            try:
                status, length, body = _read(server.base_url, target.path, cookies)
            except (OSError, http.client.HTTPException):
                return  # the server is gone
            if status == 200 and length == target.size and len(body) == target.size:
                full += 1
            else:
                return

    reader = threading.Thread(target=burst, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while full < 50 and reader.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    reader.join(timeout=60)
    stop.set()
    assert not reader.is_alive(), "the client did not notice the server's death"
    assert full >= 50, f"only {full} reads before the kill\n{server.log_text()}"

    restarted = installation.start_server()
    assert http_get(restarted.base_url, "/health")[0] == 200
    state = _audit_state(installation, target.document, [doctor.username])
    assert state["reads"] >= full, f"{full} bodies received, {state['reads']} read events"
    # An attempt audits at most once; the one cut short by the kill may or may not have.
    assert state["reads"] <= attempts
    assert state["high"] - state["low"] + 1 == state["count"], f"gap in the audit log: {state}"
    verify = _verify(installation)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    restarted.stop()


_REFUSE_INSERTS = """
from django.db import connection
with connection.cursor() as cursor:
    if {install!r}:
        cursor.execute(
            "CREATE TRIGGER audit_event_test_no_insert BEFORE INSERT ON audit_auditevent "
            "BEGIN SELECT RAISE(ABORT, 'audit log unwritable (test)'); END"
        )
    else:
        cursor.execute("DROP TRIGGER IF EXISTS audit_event_test_no_insert")
"""


def _postgres(installation: Installation, statements: list[str]) -> None:
    import psycopg

    url = installation.env["DATABASE_URL"]
    name = urlsplit(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.format(name=name))


def _make_audit_unwritable(installation: Installation, unwritable: bool) -> None:
    if installation.env.get("DATABASE_URL", "").startswith("postgres"):
        # The whole database turns read-only, as after a failover to a standby: new
        # transactions cannot write, and the server's open connections are cut so that it
        # reconnects under the new default.
        setting = "SET default_transaction_read_only = on" if unwritable else "RESET ALL"
        _postgres(
            installation,
            [
                f'ALTER DATABASE "{{name}}" {setting}',
                # Waiting (up to 5 s) until each is gone, as a failover is over before the
                # clients come back.
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            ],
        )
    else:
        # SQLite: root ignores file permissions, so the audit table itself refuses inserts.
        installation.shell(_REFUSE_INSERTS.format(install=unwritable))


def test_an_unwritable_audit_log_gets_a_503_without_a_byte_and_the_server_lives_on(
    live: Live,
) -> None:
    installation = live.installation
    target = _target(live)
    (doctor,) = _doctors(installation, 1, target.document)
    server = installation.start_server()
    client = HttpClient(server.base_url)
    client.login(installation, doctor)
    cookies = dict(client.cookies)
    status, _, body = _read(server.base_url, target.path, cookies)
    assert status == 200, "the door was closed before the outage"
    assert body.startswith(b"%PDF")
    before = _audit_state(installation, target.document, [doctor.username])["reads"]
    assert before == 1

    _make_audit_unwritable(installation, True)
    try:
        answers = [_read(server.base_url, target.path, cookies) for _ in range(3)]
        assert [status for status, _, _ in answers] == [503] * 3, [a[:2] for a in answers]
        for _, _, body in answers:
            assert b"%PDF" not in body
        assert http_get(server.base_url, "/health")[0] == 200
    finally:
        _make_audit_unwritable(installation, False)

    assert server.process.poll() is None, "the server died"
    assert http_get(server.base_url, "/health")[0] == 200
    assert _audit_state(installation, target.document, [doctor.username])["reads"] == before
    # Once the log is writable again, the door opens again.
    status, _, body = _read(server.base_url, target.path, cookies)
    assert status == 200, "the door stayed closed after the outage"
    assert body.startswith(b"%PDF")
    verify = _verify(installation)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    server.stop()
