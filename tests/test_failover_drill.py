"""Issue 23's failover drill: a group of two nodes loses a node, then its database server.

Real processes only: two nodes, each in its own network namespace running `vigie serve` and
`vigie audit watch` (a cluster singleton), behind Debian's HAProxy; a PostgreSQL primary with
a synchronous streaming standby (two clusters of Debian's PostgreSQL, 15 here, in a temporary
folder); moto's S3 server for the blobs. The nodes' DATABASE_URL lists both servers with
`target_session_attrs=read-write`.

8 doctors read documents and 2 labs post them over the REST API, all through HAProxy, each
request logged with its start, end, status and (ingests) the acknowledged id and SHA-256.

1. `kill -9` of one node's whole process group: HAProxy marks it DOWN within 3 s, and the
   only failed requests are those in flight at the kill.
2. The primary stops dead (`pg_ctl stop -m immediate`) and the standby is promoted
   (`pg_ctl promote`): the surviving node, never restarted, finds the promoted server by
   itself. Requests in between may get 503, nothing else; then every request succeeds again,
   and the survivor's audit watcher holds its lock on the promoted server and signs the tail.
3. Against the promoted database: every acknowledged ingest is there with its exact bytes
   (decrypted through Vigie) and its `intake.received` event; `vigie audit verify` passes and
   the chain has no gap; every read that received a document byte has its `document.read`
   event (per doctor and document, events >= such reads).

The counts are printed as a table. The drill brings its own clusters, so it runs once
whatever DATABASE_URL says (sqlite_only). Without haproxy or PostgreSQL's server binaries it
is skipped, except in CI (`CI` set), where .ci/run installs haproxy and the drill must run.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from pypdf import PdfWriter

from tests.browser.live import ARTIFACTS, VIGIE, HttpClient, Installation, Login
from tests.cluster import (
    HAProxy,
    Network,
    PgCluster,
    free_port,
    missing_tools,
    postgres_folder,
    stop_group,
    wait_until,
)
from tests.conftest import _base_env, keys_dir
from tests.s3server import moto_server

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

DOCTORS = 8
LABS = 2
PATIENTS = 4
DOCUMENTS_PER_PATIENT = 2
DOWN_WITHIN = 3.0  # seconds from the kill to HAProxy's DOWN (the bound)
# Pause between one client's requests: a doctor reads, a lab sends now and then. Unpaced,
# ten clients kept both cores busy and the survivor's /health answers queued behind reads.
THINK = 0.1
# Successful requests each client makes in each phase (warm-up, one node, after the failover).
PER_PHASE = 20
# Failed requests each client meets while no server takes writes, before the promotion.
OUTAGE = 2
CHECKPOINT_SECONDS = 10
PASSWORD = "failover-drill-" + secrets.token_urlsafe(12)  # every doctor's (TOTP differs)
_MARK = "@@VIGIE-FAILOVER@@"
SYNC_STATE = "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'"


# --- the requests, as the clients saw them --------------------------------------------------


@dataclass
class Request:
    client: str  # "dr.bascule3", "labo-1"
    kind: str  # "read" | "ingest"
    start: float
    end: float
    status: int  # 0: no HTTP answer at all
    ok: bool
    document: str = ""  # read: the document asked for; ingest: the acknowledged id
    sha256: str = ""  # ingest: of the bytes sent
    received: int = 0  # read: document bytes received (a 200's body, even cut short)
    error: str = ""
    by_vigie: bool = False  # answered by a node (its headers), not by HAProxy itself

    def in_flight_at(self, moment: float) -> bool:
        return self.start < moment <= self.end


@dataclass
class Load:
    base: tuple[str, int]  # HAProxy's frontend
    stop: threading.Event = field(default_factory=threading.Event)
    requests: list[Request] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=(self, *args), daemon=True)
        self.threads.append(thread)
        thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def successes_since(self, moment: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in list(self.requests):
            if r.ok and r.start >= moment:
                counts[r.client] = counts.get(r.client, 0) + 1
        return counts

    def every_client_succeeded(self, since: float, times: int, clients: int) -> bool:
        counts = self.successes_since(since)
        return len(counts) == clients and min(counts.values()) >= times

    def every_client_failed(self, since: float, times: int, clients: int) -> bool:
        counts: dict[str, int] = {}
        for r in list(self.requests):
            if not r.ok and r.start >= since:
                counts[r.client] = counts.get(r.client, 0) + 1
        return len(counts) == clients and min(counts.values()) >= times


@dataclass
class Answer:
    status: int = 0  # 0: no HTTP answer at all
    body: bytes = b""  # as far as it came, when cut short
    error: str = ""
    by_vigie: bool = False


def _exchange(
    base: tuple[str, int], method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> Answer:
    conn = http.client.HTTPConnection(*base, timeout=30)
    answer = Answer()
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        answer.status = response.status
        # Vigie's header middleware marks every answer it makes; HAProxy's own 502/503 not.
        answer.by_vigie = response.getheader("X-Robots-Tag") is not None
        answer.body = response.read()
    except http.client.IncompleteRead as exc:
        answer.body, answer.error = exc.partial, f"IncompleteRead({len(exc.partial)} bytes)"
    except (OSError, http.client.HTTPException) as exc:
        answer.error = repr(exc)
    finally:
        conn.close()
    return answer


def read_loop(load: Load, doctor: str, cookie: str, documents: dict[str, str]) -> None:
    """GET each of the doctor's documents in turn; `ok` is a 200 with exactly their bytes."""
    order = sorted(documents)
    n = 0
    while not load.stop.is_set():
        pk = order[n % len(order)]
        n += 1
        start = time.monotonic()
        got = _exchange(load.base, "GET", f"/documents/{pk}/content", None, {"Cookie": cookie})
        ok = got.status == 200 and hashlib.sha256(got.body).hexdigest() == documents[pk]
        load.requests.append(
            Request(doctor, "read", start, time.monotonic(), got.status, ok, document=pk,
                    received=len(got.body) if got.status == 200 else 0, error=got.error,
                    by_vigie=got.by_vigie)
        )  # fmt: skip
        load.stop.wait(THINK)


def _text(body: bytes) -> str:
    return body[:80].decode(errors="replace")


def _pdf(label: str) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": label})  # what makes each document's bytes its own
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def ingest_loop(load: Load, lab: str, key: str, ins: list[str]) -> None:
    """POST one new PDF after another, as a lab's middleware; `ok` is a 202 with an id."""
    n = 0
    while not load.stop.is_set():
        n += 1
        content = _pdf(f"{lab} result {n} {secrets.token_hex(8)}")
        meta = {
            "patient": {"ins": ins[n % len(ins)]},
            "document": {
                "kind": "lab_result",
                "title": f"Bilan {n}",
                "clinical_date": "2026-11-02",
            },
        }
        boundary = secrets.token_hex(16)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
                f"Content-Type: application/json\r\n\r\n{json.dumps(meta)}\r\n"
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="r.pdf"\r\n'
                f"Content-Type: application/pdf\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        start = time.monotonic()
        got = _exchange(load.base, "POST", "/api/v1/documents", body, headers)
        acknowledged = str(json.loads(got.body).get("id") or "") if got.status == 202 else ""
        load.requests.append(
            Request(lab, "ingest", start, time.monotonic(), got.status, bool(acknowledged),
                    document=acknowledged, sha256=hashlib.sha256(content).hexdigest(),
                    error=got.error or ("" if acknowledged else _text(got.body)),
                    by_vigie=got.by_vigie)
        )  # fmt: skip
        load.stop.wait(THINK)


class Monitor:
    """Polls HAProxy's view of the servers; keeps every change with its moment."""

    def __init__(self, haproxy: HAProxy) -> None:
        self.haproxy = haproxy
        self.changes: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = self.haproxy.status()
            except OSError:
                status = {}
            if not self.changes or self.changes[-1][1] != status:
                self.changes.append((time.monotonic(), status))
            self._stop.wait(0.02)

    def first(self, server: str, prefix: str, since: float) -> float | None:
        return next(
            (
                t
                for t, s in list(self.changes)
                if t >= since and s.get(server, "").startswith(prefix)
            ),
            None,
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- the group --------------------------------------------------------------------------------


@dataclass
class Group:
    root: Path
    network: Network
    primary: PgCluster
    standby: PgCluster
    installation: Installation
    haproxy: HAProxy
    nodes: dict[str, subprocess.Popen[bytes]]
    addresses: dict[str, str]  # node -> address:port
    seeded: dict[str, Any]


_SEED = """
import datetime, hashlib, io, json, os
from base64 import b32encode
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
from vigie.intake.apikeys import create_key
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import CareRelationship, CareRole
from vigie.records.testing import make_patient
patients = [make_patient(f"BASCULE{{'ABCDEFGH'[i]}}") for i in range({patients})]
documents = []
for i, patient in enumerate(patients):
    docs = {{}}
    for j in range({per_patient}):
        content = b"%PDF-1.4 failover drill " + os.urandom(20000 + 7919 * j)
        meta = DocumentMeta(kind="lab_result", title=f"Bilan {{i}}-{{j}}",
            clinical_date=datetime.date(2026, 1, 1), source_system="FAILOVER-DRILL")
        document = ingest(patient, meta, io.BytesIO(content))
        docs[document.pk] = hashlib.sha256(content).hexdigest()
    documents.append(docs)
doctors = []
for i in range({doctors}):
    user = User(username=f"dr.bascule{{i}}", first_name="Drill", last_name=f"Bascule{{i}}",
        role=Role.DOCTOR)
    user.set_password({password!r})
    user.save()
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    readable = {{}}
    for k in (i % len(patients), (i + 1) % len(patients)):
        CareRelationship.objects.create(doctor=user, patient=patients[k], role=CareRole.TREATING)
        readable.update(documents[k])
    doctors.append(dict(username=user.username, totp=b32encode(device.bin_key).decode(),
        documents=readable))
keys = [create_key(f"labo-{{n}}", source_system=f"LABO-{{n}}", by="failover drill")[1]
        for n in range({labs})]
print({mark!r} + json.dumps(dict(doctors=doctors, keys=keys, ins=[p.ins for p in patients])))
"""


def _bucket(endpoint: str, keys: Path) -> str:
    (keys / "s3-id").write_text("vigie-drill-id\n", encoding="utf-8")
    (keys / "s3-secret").write_text("vigie-drill-secret\n", encoding="utf-8")
    for path in (keys / "s3-id", keys / "s3-secret"):
        path.chmod(0o600)
    bucket = f"vigie-{secrets.token_hex(8)}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="y",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)  # fmt: skip
    return bucket


def _start_node(
    log_path: Path, env: dict[str, str], ns: str, address: str, port: int
) -> subprocess.Popen[bytes]:
    """A node: `vigie serve` (granian) and the audit watcher, as a host's two services.

    Both run in one process group (a session of its own) inside the node's namespace, so a
    kill of the group is the death of the whole host. The watcher is a cluster singleton:
    whichever node holds its advisory lock signs the audit tail's checkpoints."""
    vigie = " ".join(shlex.quote(part) for part in VIGIE)
    script = (
        f"{vigie} audit watch --interval 1 & "
        f"exec {vigie} serve --host {address} --port {port} --workers 1 --threads 4"
    )
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, "sh", "-c", script],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def _serving(process: subprocess.Popen[bytes], where: str, log: Path) -> bool:
    """The node answers its health check (HAProxy's request); a node that exited fails."""
    if process.poll() is not None:
        raise AssertionError(f"vigie serve exited {process.returncode}\n{log.read_text()[-3000:]}")
    host, port = where.split(":")
    answer = _exchange((host, int(port)), "GET", "/health", None, {"Host": "localhost"})
    return answer.status == 200


@pytest.fixture
def group() -> Iterator[Group]:
    missing = missing_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the failover drill must run in CI; missing: {', '.join(missing)}")
        pytest.skip(f"the failover drill needs {', '.join(missing)}")
    root = Path(tempfile.mkdtemp(prefix="vigie-failover-"))
    network = Network()
    pg_root = root / "pg"
    svc = network.service_address
    primary = PgCluster(pg_root / "primary", free_port("127.0.0.1"), ["127.0.0.1", svc])
    standby = PgCluster(pg_root / "standby", free_port("127.0.0.1"), ["127.0.0.1", svc])
    haproxy = HAProxy(root, free_port("127.0.0.1"), {})
    nodes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        postgres_folder(pg_root)
        network.up()
        with moto_server(svc) as s3:
            primary.init_primary(f"{network.subnet}.0/24", "standby")
            primary.start()
            standby.init_standby(primary, "standby")
            standby.start()
            wait_until(
                "the standby streams synchronously",
                lambda: primary.query(SYNC_STATE) == [("sync",)],
                60,
            )
            primary.query("CREATE DATABASE vigie")
            home = root / "home"
            env = _base_env(home)
            hosts = [network.add_host() for _ in range(2)]
            keys = keys_dir(home)
            env.update(
                DATABASE_URL=(
                    f"postgres://postgres@{svc}:{primary.port},{svc}:{standby.port}/vigie"
                    "?target_session_attrs=read-write&connect_timeout=3"
                ),
                VIGIE_ALLOWED_HOSTS=",".join(["localhost", "127.0.0.1", *(a for _, a in hosts)]),
                VIGIE_BLOB_STORE="s3",
                VIGIE_S3_ENDPOINT_URL=s3,
                VIGIE_S3_ACCESS_KEY_ID_FILE=str(keys / "s3-id"),
                VIGIE_S3_SECRET_ACCESS_KEY_FILE=str(keys / "s3-secret"),
                # The watcher signs the tail this often, and `audit verify` fails a tail older
                # than twice that: short enough that the check proves the watcher went on
                # signing after the failover.
                VIGIE_AUDIT_CHECKPOINT_SECONDS=str(CHECKPOINT_SECONDS),
            )
            installation = Installation(root=root, env=env)
            installation.vigie("keys", "init")
            env["VIGIE_S3_BUCKET"] = _bucket(s3, keys)
            installation.vigie("migrate", "--no-input", timeout=300)
            seeded = installation.shell_json(
                _SEED.format(
                    patients=PATIENTS, per_patient=DOCUMENTS_PER_PATIENT, doctors=DOCTORS,
                    labs=LABS, password=PASSWORD, mark=_MARK,
                ),
                _MARK,
            )  # fmt: skip
            port = free_port("127.0.0.1")  # the same on both nodes, as on real hosts
            addresses = {}
            # One after the other: `vigie serve` refreshes the collected static files in the
            # shared VIGIE_HOME when they are out of step, and two starting at once raced on
            # its fixed temporary file (one exited: FileNotFoundError). The second finds them
            # in step and skips.
            for n, (ns, address) in enumerate(hosts):
                name = f"node{'ab'[n]}"
                nodes[name] = _start_node(root / f"{name}.log", env, ns, address, port)
                addresses[name] = f"{address}:{port}"
                serving = functools.partial(
                    _serving, nodes[name], addresses[name], root / f"{name}.log"
                )
                wait_until(f"{name} answers /health", serving, 90, step=0.2)
            haproxy.servers = addresses
            haproxy.start()
            yield Group(
                root, network, primary, standby, installation, haproxy, nodes, addresses, seeded
            )
    finally:
        for process in nodes.values():
            stop_group(process)
        haproxy.stop()
        primary.kill()
        standby.kill()
        network.close()
        # The nodes', HAProxy's and the servers' logs, for whoever reads a failed run.
        kept = ARTIFACTS / "failover-drill"
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True, exist_ok=True)
        for log in [*root.glob("*.log"), *pg_root.glob("*.log")]:
            shutil.copy(log, kept / log.name)
        shutil.rmtree(root, ignore_errors=True)


# --- the check against the promoted database ---------------------------------------------

# Run with the installation's environment (DATABASE_URL lists both servers: only the
# promoted one takes read-write sessions now). Decrypts each acknowledged document through
# Vigie's own reader, counts the events, and runs `audit verify` in the same process.
_VERIFY = """
import hashlib, io, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
from vigie.startup import preflight
preflight()
import django
django.setup()
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Max, Min
from vigie.audit.models import AuditEvent
from vigie.records.content import stream_verified
from vigie.records.models import Document
wanted = json.load(open(sys.argv[1]))
digests, problems = {}, {}
for document in Document.objects.filter(pk__in=list(wanted["ingests"])):
    digest = hashlib.sha256()
    try:
        for chunk in stream_verified(document):
            digest.update(chunk)
    except Exception as exc:
        problems[document.pk] = repr(exc)
        continue
    digests[document.pk] = digest.hexdigest()
lab_documents = Document.objects.filter(source_system__startswith="LABO-").count()
received = set()
for extra in AuditEvent.objects.filter(action="intake.received").values_list("extra", flat=True):
    received.add(extra.get("document_id", ""))
reads = {}
rows = (AuditEvent.objects.filter(action="document.read", outcome="success")
        .values("actor_username", "document_id").annotate(n=Count("seq")))
for row in rows:
    reads[row["actor_username"] + " " + row["document_id"]] = row["n"]
chain = AuditEvent.objects.aggregate(n=Count("seq"), first=Min("seq"), last=Max("seq"))
out = io.StringIO()
try:
    call_command("audit", "verify", stdout=out)
    code = 0
except CommandError as exc:
    code = exc.returncode
    out.write(str(exc))
with connection.cursor() as cursor:
    cursor.execute("SELECT inet_server_port(), pg_is_in_recovery()")
    server = cursor.fetchone()
print("@@VIGIE-FAILOVER@@" + json.dumps(dict(digests=digests, problems=problems,
    received=sorted(received & set(wanted["ingests"])), reads=reads, chain=chain,
    verify=dict(code=code, out=out.getvalue()), server=list(server),
    lab_documents=lab_documents)))
"""


def _verify(group: Group, ingests: dict[str, str]) -> dict[str, Any]:
    wanted = group.root / "wanted.json"
    wanted.write_text(json.dumps({"ingests": ingests}), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _VERIFY, str(wanted)], env=group.installation.env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(_MARK), result.stdout[-2000:]
    report: dict[str, Any] = json.loads(line[len(_MARK) :])
    return report


def _table(rows: list[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


# --- the drill ------------------------------------------------------------------------------


def test_a_node_then_the_primary_fail_and_nothing_acknowledged_is_lost(group: Group) -> None:
    t_setup = time.monotonic()
    seeded = group.seeded
    # Every doctor signs in (password, then the authenticator's code) through HAProxy before
    # the load starts; the sessions live in the database, so either node honours them.
    cookies = []
    for doctor in seeded["doctors"]:
        client = HttpClient(f"http://127.0.0.1:{group.haproxy.port}")
        user = Login(doctor["username"], PASSWORD, "doctor", totp_secret=doctor["totp"])
        client.login(group.installation, user)
        cookies.append("; ".join(f"{k}={v}" for k, v in client.cookies.items()))

    load = Load(("127.0.0.1", group.haproxy.port))
    monitor = Monitor(group.haproxy)
    clients = DOCTORS + LABS
    killed, survivor = "nodea", "nodeb"
    try:
        for doctor, cookie in zip(seeded["doctors"], cookies, strict=True):
            load.spawn(read_loop, doctor["username"], cookie, doctor["documents"])
        for n, key in enumerate(seeded["keys"]):
            load.spawn(ingest_loop, f"labo-{n}", key, seeded["ins"])
        t_load = time.monotonic()
        # Warm-up: every client served several times, and both nodes took their share.
        wait_until("warm-up", lambda: load.every_client_succeeded(t_load, PER_PHASE, clients), 120)
        served = group.haproxy.served()
        assert min(served.values()) > 0, served

        # 1. kill -9 one node, every process of it at once (its process group).
        holder_before = _watch_holder(group.primary, group.nodes)
        assert holder_before in group.nodes, holder_before  # one watcher works
        t_kill = time.monotonic()
        os.killpg(group.nodes[killed].pid, signal.SIGKILL)
        # The kill is asynchronous: until the processes are gone the kernel still accepts
        # connections on their socket. A request HAProxy sent in that instant is in flight
        # at the kill too; the node is gone once its port refuses.
        wait_until(
            "the killed node's port refuses", lambda: _refuses(group.addresses[killed]), 10, 0.002
        )
        t_gone = time.monotonic()
        wait_until(
            "HAProxy marks the killed node DOWN",
            lambda: monitor.first(killed, "DOWN", t_kill) is not None,
            30,
        )
        t_down = monitor.first(killed, "DOWN", t_kill) or 0.0
        sent_to_killed = group.haproxy.served()[killed]
        wait_until(
            "the survivor serves everyone",
            lambda: load.every_client_succeeded(t_down, PER_PHASE, clients),
            120,
        )

        # 2. The primary dies. Once every client has met the outage, the standby is promoted.
        # Synchronous up to the crash: what makes every acknowledged commit the standby's too.
        assert group.primary.query(SYNC_STATE) == [("sync",)]
        t_db_stop = time.monotonic()
        group.primary.stop("immediate")
        wait_until(
            "every client meets the outage",
            lambda: load.every_client_failed(t_db_stop, OUTAGE, clients),
            60,
        )
        # The load balancer's check does not depend on the database: every node would
        # otherwise be taken out together, and come back only `rise` checks after it.
        health = [_timed_health(group.addresses[survivor]) for _ in range(5)]
        t_promote = time.monotonic()
        group.standby.promote()
        t_promoted = time.monotonic()
        wait_until(
            "every client served again",
            lambda: load.every_client_succeeded(t_promoted, 1, clients),
            60,
        )
        t_recovered = time.monotonic()
        # The audit watcher, a cluster singleton, lives on: the survivor's takes the lock on
        # the promoted server by itself, and the tail is signed past the recovery.
        wait_until(
            "the survivor's audit watcher holds its lock on the promoted server",
            lambda: _watch_holder(group.standby, group.nodes) == survivor,
            4 * CHECKPOINT_SECONDS,
        )
        t_held = time.monotonic()
        head = group.standby.query("SELECT max(seq) FROM audit_auditevent", "vigie")[0][0]
        checkpoints = group.installation.home / "audit" / "checkpoints.jsonl"
        wait_until(
            "a checkpoint signed after the failover",
            lambda: _last_checkpoint(checkpoints) >= head,
            4 * CHECKPOINT_SECONDS,
        )
        t_signed = time.monotonic()
        wait_until(
            "load after the failover",
            lambda: load.every_client_succeeded(t_recovered, PER_PHASE, clients),
            120,
        )
    finally:
        load.finish()
        monitor.close()
    t_end = time.monotonic()
    assert not [t for t in load.threads if t.is_alive()], "a client did not stop"
    # The survivor was never restarted, nor ever taken out by HAProxy.
    assert group.nodes[survivor].poll() is None, "the surviving node exited"
    # Once DOWN, HAProxy sent the dead node nothing more.
    sent_after_down = group.haproxy.served()[killed] - sent_to_killed
    survivor_down = monitor.first(survivor, "DOWN", t_setup)

    requests = sorted(load.requests, key=lambda r: r.start)
    failed = [r for r in requests if not r.ok]
    # The kill's window: started before the node was gone, still running when it was killed.
    in_flight = [r for r in failed if r.start < t_gone and r.end >= t_kill and r.end < t_db_stop]
    before = [r for r in failed if r.end < t_kill]
    after_kill = [r for r in failed if r.start >= t_gone and r.end < t_db_stop]
    switch = [r for r in failed if r.end >= t_db_stop and r.start < t_recovered]
    late = [r for r in failed if r.start >= t_recovered]
    acked = {r.document: r.sha256 for r in requests if r.kind == "ingest" and r.ok}
    got_bytes: dict[str, int] = {}  # "doctor document" -> reads that received document bytes
    for r in requests:
        if r.kind == "read" and r.received:
            got_bytes[f"{r.client} {r.document}"] = got_bytes.get(f"{r.client} {r.document}", 0) + 1

    report = _verify(group, acked)
    events = report["reads"]
    short = {p: (n, events.get(p, 0)) for p, n in got_bytes.items() if events.get(p, 0) < n}
    intact = sum(report["digests"].get(pk) == sha for pk, sha in acked.items())
    chain = report["chain"]
    reads = sum(r.kind == "read" for r in requests)
    received = sum(got_bytes.values())
    # A lab's request that failed may still have been stored (the answer lost with the node,
    # or the commit made on the standby as the primary died): a retry with the same
    # Idempotency-Key gets the same receipt. Never more than the ingests that failed.
    unacknowledged = report["lab_documents"] - len(acked)
    missing_events = sum(n - e for n, e in short.values())
    phases = [t_kill, t_db_stop, t_promoted, t_end]
    rows: list[tuple[str, object]] = [
        ("requests: reads + ingests", f"{reads} + {len(requests) - reads}"),
        ("failed before the kill", len(before)),
        ("failed in flight at the kill", f"{len(in_flight)} {_statuses(in_flight)}"),
        ("failed after the kill", len(after_kill)),
        ("failed during the database switch", f"{len(switch)} {_statuses(switch)}"),
        ("failed after recovery", len(late)),
        ("kill -> port refuses", f"{(t_gone - t_kill) * 1000:.0f} ms"),
        ("kill -> HAProxy DOWN", f"{t_down - t_kill:.2f} s (limit {DOWN_WITHIN:g} s)"),
        ("sent to the killed node after DOWN", sent_after_down),
        ("primary stopped -> promoted", f"{t_promoted - t_db_stop:.2f} s"),
        ("  of which pg_ctl promote", f"{t_promoted - t_promote:.2f} s"),
        ("  survivor's /health in the outage", ", ".join(f"{c} {d:.3f}" for c, d in health)),
        ("promoted -> every client served", f"{t_recovered - t_promoted:.2f} s"),
        ("audit watch lock before the kill", holder_before),
        ("promoted -> survivor's watcher holds it", f"{t_held - t_promoted:.2f} s"),
        ("promoted -> tail signed past recovery", f"{t_signed - t_promoted:.2f} s"),
        ("acknowledged ingests", len(acked)),
        ("  stored but never acknowledged", unacknowledged),
        ("  intact, with their event", f"{intact}, {len(report['received'])}"),
        ("reads with document bytes (pairs)", f"{received} ({len(got_bytes)})"),
        ("  with their read event", received - missing_events),
        ("audit events verified, seq", f"{chain['n']}, {chain['first']}..{chain['last']}"),
        ("vigie audit verify", (report["verify"]["out"].strip().splitlines() or [""])[-1]),
        ("kill, db stop, promoted, end at", ", ".join(f"{t - t_load:.1f}" for t in phases) + " s"),
    ]
    print("\nfailover drill (times from the load's start):\n" + _table(rows))
    for t, servers in monitor.changes:
        print(f"  haproxy {t - t_load:+.3f} s: {servers}")
    for r in failed[:30]:
        by = "vigie" if r.by_vigie else "haproxy"
        when = f"{r.start - t_load:+.3f}..{r.end - t_load:+.3f} s"
        print(f"  failed {r.client} {r.kind} {when}: {r.status} {by} {r.error[:60]!r}")

    # The node: DOWN in time, sent nothing more; the only failures are the requests it held
    # when killed. The survivor was never taken out.
    assert t_down - t_kill <= DOWN_WITHIN
    assert sent_after_down == 0
    assert survivor_down is None, survivor_down - t_load
    assert [status for status, _ in health] == [200] * len(health), health
    assert before == [], before
    assert after_kill == [], after_kill
    # ...and they are the dead node's: HAProxy's 502 for an answer that never came, or a
    # document stream cut short (a 200 whose bytes stop), never an error of the survivor.
    assert [r for r in in_flight if r.by_vigie != (r.status == 200)] == [], in_flight
    assert {r.status for r in in_flight} <= {200, 502}, in_flight
    # The database: while no server takes writes the nodes answer 503 themselves, nothing
    # else; after the promotion every request succeeds again.
    assert len(switch) >= OUTAGE * clients  # the drill waited for every client to meet it
    assert [(r.status, r.by_vigie) for r in switch if (r.status, r.by_vigie) != (503, True)] == []
    assert late == [], late
    # Never a 200 without the document's exact bytes, but for a stream the kill cut.
    cut = [r for r in requests if r.kind == "read" and r.status == 200 and not r.ok]
    assert [r for r in cut if r not in in_flight] == [], cut
    # Checked on the promoted server (the nodes' DATABASE_URL, the primary being dead).
    assert report["server"] == [group.standby.port, False], report["server"]
    # Nothing acknowledged is lost: its exact bytes, and its reception's audit event.
    assert acked, "no ingest was acknowledged"
    assert report["problems"] == {}, report["problems"]
    assert intact == len(acked), {pk: report["digests"].get(pk) for pk in acked}
    assert set(report["received"]) == set(acked)
    assert 0 <= unacknowledged <= sum(r.kind == "ingest" for r in failed)
    # No document byte left without its read event, per doctor and document.
    assert got_bytes, "no read received a document"
    assert short == {}, short
    # The chain verifies, gapless from its first event.
    assert report["verify"]["code"] == 0, report["verify"]["out"]
    assert (chain["first"], chain["last"]) == (1, chain["n"]), chain


def _last_checkpoint(path: Path) -> int:
    """The seq of the checkpoint file's last line (0 before the first)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError):  # a line being written
            continue
    return 0


def _watch_holder(cluster: PgCluster, nodes: dict[str, subprocess.Popen[bytes]]) -> str:
    """Which node's audit watcher holds its advisory lock on `cluster` ("" if none).

    Singleton lock sessions are named `vigie@<host>:<pid>`; the pid's process group is the
    node's (the namespaces share the host's pid namespace)."""
    rows = cluster.query(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'vigie@%:%'",
        "vigie",
    )
    groups = {process.pid: name for name, process in nodes.items()}
    holders = []
    for (application_name,) in rows:
        try:
            holders.append(groups.get(os.getpgid(int(application_name.rsplit(":", 1)[1])), "?"))
        except (ValueError, ProcessLookupError):
            holders.append("?")
    return ",".join(sorted(holders))


def _timed_health(where: str) -> tuple[int, float]:
    """(status, seconds) of one /health on the node at `where`, as HAProxy asks it."""
    host, port = where.split(":")
    start = time.monotonic()
    answer = _exchange((host, int(port)), "GET", "/health", None, {"Host": "localhost"})
    return answer.status, round(time.monotonic() - start, 3)


def _refuses(where: str) -> bool:
    host, port = where.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _statuses(requests: list[Request]) -> str:
    return str(sorted({r.status for r in requests}))
