"""The exposure guard's end-to-end drill (issue 5's acceptance), with real parts only.

Two network namespaces joined by a veth pair: `clinic` runs `vigie serve` and `vigie guard
run` (real nftables, real conntrack), `outside` is the rest of the world. The test's own
threads enter a namespace with setns(2) before they open a socket, so every connection below
really crosses the veth and the firewall, exactly as a stranger's would.

The drill replays the incident: a contractor is let in for five seconds; the kernel closes
the window by itself (also with the guard SIGKILLed) and cuts the session that was open;
someone then drops the firewall by hand; a stranger fetches a decoy link. Each is detected,
and measured: the latencies are printed and written to test-artifacts/guard-drill.json.

The installation uses SQLite whatever DATABASE_URL says: the drill is about the network,
and a TCP database on the host is not reachable from inside `clinic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.live import ARTIFACTS, VIGIE, HttpClient, Installation, free_port
from vigie.guard.testing import Host, delete_netns, link, make_netns, netns_supported

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.sqlite_only]

WINDOW_SECONDS = 5.0


def can_connect(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def health_roundtrip(sock: socket.socket) -> bool:
    """One GET /health on an already open connection; False if the connection is cut."""
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\nok\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        return True
    except OSError:
        return False


@dataclass
class Drill:
    installation: Installation
    clinic: Host
    outside: Host
    port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.clinic.address}:{self.port}"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.installation.home / 'vigie.sqlite3'}?mode=ro", uri=True)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.db()) as conn:
            return conn.execute(sql, params).fetchall()

    def vigie_in_clinic(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.clinic.argv(*VIGIE, *args),
            env=self.installation.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"vigie {' '.join(args)}: {result.returncode}\n{result.stderr}")
        return result

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.installation.root / f"{name}.log").open("ab")
        process = subprocess.Popen(
            self.clinic.argv(*VIGIE, *args),
            env=self.installation.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.installation.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start_guard(self) -> None:
        self.start("guard", "guard", "run")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = self.rows(
                "SELECT count(*) FROM audit_auditevent WHERE action = 'guard.started'"
            )[0][0]
            if ready > self.measured.get("guard_starts", 0):
                self.measured["guard_starts"] = ready
                return
            assert self.processes["guard"].poll() is None, self.log("guard")
            time.sleep(0.1)
        raise AssertionError(f"the guard did not start\n{self.log('guard')}")

    def open_window(self, ttl: str) -> None:
        self.vigie_in_clinic(
            "maintenance", "open", "--who", "Contractor (remote maintenance)",
            "--reason", "drill", "--source", self.outside.address, "--ttl", ttl,
        )  # fmt: skip

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        """Seconds until `predicate()` holds; fails after `timeout`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout} s")

    def alerts(self, kind: str, since: float) -> list[tuple[str, str]]:
        return [
            (summary, details)
            for summary, details, first_seen in self.rows(
                "SELECT summary, details, first_seen FROM alerts_alert WHERE kind = ?", kind
            )
            if _epoch(first_seen) >= since - 1
        ]


def _epoch(stamp: str) -> float:
    # Django stores aware datetimes in SQLite as UTC text without an offset.
    moment = datetime.fromisoformat(stamp.replace(" ", "T"))
    return moment.replace(tzinfo=moment.tzinfo or UTC).timestamp()


def _policy(path: Path, *, port: int, clinic: str, outside: str) -> None:
    path.write_text(
        f"""
[guard]
snapshot_interval = "5s"
probe_interval = "10s"
lockdown_on_exposure = true

[maintenance]
max_ttl = "4h"
ports = [{port}]

[[listener]]
name = "portal"
address = "0.0.0.0"
port = {port}
exposure = "public"
# The clinic's own network (none of the drill's addresses): outside is not in it.
sources = ["192.0.2.0/24"]

[probe]
base_urls = ["http://{clinic}:{port}"]
vantage = ["ip", "netns", "exec", "{outside}"]
sample_size = 3
""",
        encoding="utf-8",
    )


@pytest.fixture
def drill() -> Iterator[Drill]:
    reason = netns_supported()
    if reason is not None:
        pytest.fail(f"the guard drill needs network namespaces: {reason}")
    clinic_ns, outside_ns = make_netns("vclinic"), make_netns("voutside")
    root = Path(tempfile.mkdtemp(prefix="vigie-drill-"))
    hosts: list[Host] = []
    drill_: Drill | None = None
    try:
        clinic_address, outside_address = link(clinic_ns, outside_ns)
        clinic = Host(clinic_ns, clinic_address)
        outside = Host(outside_ns, outside_address)
        hosts += [clinic, outside]
        port = free_port()
        policy = root / "vigie-policy.toml"
        _policy(policy, port=port, clinic=clinic.address, outside=outside_ns)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
        }
        env.update(
            VIGIE_HOME=str(root / "home"),
            VIGIE_MODE="demo",
            PYTHONUNBUFFERED="1",
            VIGIE_POLICY_FILE=str(policy),
            VIGIE_ALLOWED_HOSTS=f"127.0.0.1,localhost,{clinic.address}",
        )
        installation = Installation(root=root, env=env)
        installation.seed()
        installation.vigie("canary", "create", "--count", "1")
        drill_ = Drill(installation, clinic, outside, port)
        # The portal listens on every address: the firewall is what the drill tests.
        everywhere = "0.0.0.0"
        drill_.start(
            "serve", "serve", "--host", everywhere, "--port", str(port), "--workers", "1",
            "--threads", "4",
        )  # fmt: skip
        drill_.wait_for(
            "vigie serve answers inside the clinic",
            lambda: clinic.call(can_connect, "127.0.0.1", port),
            60,
        )
        drill_.start_guard()
        yield drill_
    finally:
        if drill_ is not None:
            for name in list(drill_.processes):
                drill_.kill(name, signal.SIGKILL)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "guard-drill.json").write_text(
                json.dumps(drill_.measured, indent=2) + "\n", encoding="utf-8"
            )
        for host in hosts:
            host.close()
        delete_netns(clinic_ns)
        delete_netns(outside_ns)


def _facts(drill: Drill) -> tuple[list[str], str]:
    facts = drill.installation.facts
    documents = [d["id"] for d in facts["documents"]]
    decoy = drill.rows(
        "SELECT d.id FROM records_document d JOIN guard_canary c ON c.patient_id = d.patient_id"
    )
    assert decoy, "vigie canary create made no decoy document"
    real = [d for d in documents if d != decoy[0][0]]
    return real, decoy[0][0]


def test_contractor_window_closes_itself_and_every_exposure_is_caught(drill: Drill) -> None:
    clinic, outside, port = drill.clinic, drill.outside, drill.port
    real_documents, decoy = _facts(drill)
    stranger = HttpClient(drill.base_url)

    # 1. By default the outside world cannot even connect to the portal's port.
    assert not outside.call(can_connect, clinic.address, port)

    # 2. A five-second window for the contractor's address.
    opened = threading.Event()
    first_open: list[float] = []

    def watch_open() -> None:
        while not opened.is_set():
            if can_connect(clinic.address, port, 0.3):
                first_open.append(time.monotonic())
                opened.set()
                return
            time.sleep(0.02)

    watcher = outside.pool.submit(watch_open)
    drill.open_window(f"{WINDOW_SECONDS:g}s")
    assert opened.wait(10), "the window never let the contractor in"
    watcher.result(timeout=5)
    t_open = first_open[0]

    # The session the contractor keeps open through the window.
    session = outside.call(socket.create_connection, (clinic.address, port), 3)
    assert outside.call(health_roundtrip, session)

    # Through the window: the login page and nothing else; no document byte for anyone.
    login = outside.call(stranger.request, "GET", "/accounts/login/")
    assert login.status == 200
    assert b"password" in login.body.lower()
    for document in real_documents[:3]:
        for path in (
            f"/documents/{document}/content",
            f"/documents/{document}/download",
            f"/documents/{document}/",
        ):
            reply = outside.call(stranger.request, "GET", path, follow=False)
            assert reply.status in (302, 404), (path, reply.status)
            assert b"%PDF" not in reply.body
    for path in ("/admin/", "/audit/", "/guard/", "/api/v1/documents"):
        reply = outside.call(stranger.request, "GET", path, follow=False)
        assert reply.status in (302, 401, 404), (path, reply.status)

    # A stranger fetches a decoy link: the alarm names the stranger's address within 5 s.
    t_decoy = time.time()
    reply = outside.call(stranger.request, "GET", f"/documents/{decoy}/content", follow=False)
    assert reply.status == 302
    assert b"%PDF" not in reply.body
    drill.wait_for(
        "decoy alarm",
        lambda: any(outside.address in d for _, d in drill.alerts("guard.canary.touched", t_decoy)),
        5,
    )
    # From just before the stranger's request to the alert seen in the database.
    decoy_latency = time.time() - t_decoy
    assert decoy_latency <= 5
    drill.measured["decoy_alert_seconds"] = round(decoy_latency, 3)

    # Keep the contractor's session busy so that only the firewall can end it.
    assert outside.call(health_roundtrip, session)

    def closed() -> bool:
        return not outside.call(can_connect, clinic.address, port, 0.3)

    drill.wait_for("the window closes", closed, WINDOW_SECONDS + 5)
    open_for = time.monotonic() - t_open
    drill.measured["window_open_seconds"] = round(open_for, 3)
    assert WINDOW_SECONDS - 1 <= open_for <= WINDOW_SECONDS + 1, open_for
    # ...and the session that was open through it is cut too.
    assert not outside.call(health_roundtrip, session)
    session.close()

    # The guard records the end and checks from outside that the port is closed again.
    drill.wait_for(
        "the guard verified the closed window from outside",
        lambda: (
            drill.rows(
                "SELECT count(*) FROM guard_maintenancewindow "
                "WHERE close_reason = 'expired' AND verified_closed = 1"
            )[0][0]
            == 1
        ),
        15,
    )

    # 3. Again, with the guard SIGKILLed right after the window opened: the kernel closes it.
    opened.clear()
    first_open.clear()
    watcher = outside.pool.submit(watch_open)
    drill.open_window(f"{WINDOW_SECONDS:g}s")
    drill.kill("guard", signal.SIGKILL)
    assert opened.wait(10)
    watcher.result(timeout=5)
    t_open = first_open[0]
    session = outside.call(socket.create_connection, (clinic.address, port), 3)
    assert outside.call(health_roundtrip, session)
    drill.wait_for("the window closes with the guard dead", closed, WINDOW_SECONDS + 5)
    open_for = time.monotonic() - t_open
    drill.measured["window_open_seconds_guard_killed"] = round(open_for, 3)
    assert WINDOW_SECONDS - 1 <= open_for <= WINDOW_SECONDS + 1, open_for
    assert not outside.call(health_roundtrip, session)
    session.close()
    drill.start_guard()
    drill.wait_for(
        "the restarted guard records the window the kernel closed",
        lambda: (
            drill.rows(
                "SELECT count(*) FROM guard_maintenancewindow WHERE close_reason = 'expired'"
            )[0][0]
            == 2
        ),
        15,
    )

    # 4. A doctor reads a document from inside the clinic, before anything goes wrong.
    doctor_login = drill.installation.login("doctor", 0)
    doctor = HttpClient(f"http://127.0.0.1:{port}")
    clinic.call(doctor.login, drill.installation, doctor_login)
    own = drill.installation.facts["scope"][doctor_login.username][0]
    readable = next(d["id"] for d in drill.installation.facts["documents"] if d["patient"] == own)
    before = clinic.call(doctor.request, "GET", f"/documents/{readable}/content")
    assert before.status == 200
    assert before.body.startswith(b"%PDF")
    fhir_before = clinic.call(doctor.request, "GET", f"/fhir/Binary/{readable}")
    assert fhir_before.status == 200
    assert fhir_before.body.startswith(b"%PDF")

    # 5. The incident's mistake: someone drops the firewall by hand.
    t_flush = time.time()
    subprocess.run(clinic.argv("nft", "flush", "ruleset"), check=True, timeout=30)
    drift_latency = drill.wait_for(
        "drift alarm", lambda: bool(drill.alerts("guard.drift", t_flush)), 10
    )
    drill.measured["drift_alert_seconds"] = round(drift_latency, 3)
    # The guard put its table back (issue 15; each tampering is timed in
    # test_guard_drill_heal.py, with the lockdown an unrepairable bypass brings).
    assert not outside.call(can_connect, clinic.address, port), "the flush was not repaired"
    drill.wait_for(
        "the outside verdict on the repair",
        lambda: bool(
            drill.rows(
                "SELECT count(*) FROM audit_auditevent WHERE action = 'guard.table.repaired'"
            )[0][0]
        ),
        30,
    )
    # The flush comes right after the guard's restart, so it may land in the guard's first
    # probe round, which then sees the port open for the ~0.3 s before the repair. Whether
    # it did or not, wait until every round that could have seen it has ended: one that
    # began after the repair has stored its results (rounds run one after another).
    repaired_at = max(
        _epoch(at)
        for (at,) in drill.rows(
            "SELECT at FROM audit_auditevent WHERE action = 'guard.table.repaired'"
        )
    )
    drill.wait_for(
        "a probe round after the repair",
        lambda: any(
            _epoch(at) > repaired_at
            for (at,) in drill.rows("SELECT DISTINCT checked_at FROM guard_proberesult")
        ),
        40,
    )
    # A round that raced the repair recorded the exposure, and that it was closed again.
    raced = drill.alerts("guard.probe.exposure", t_flush)
    drill.measured["probe_round_raced_the_repair"] = bool(raced)
    for summary, details in raced:
        recheck = json.loads(details)["recheck"]
        assert recheck["closed"], summary
        assert recheck["still_open"] == [], summary
    # Seen closed from outside: no lockdown, the doctor reads on.
    assert drill.rows("SELECT lockdown FROM guard_guardstate")[0:1] == [(0,)]
    after = clinic.call(doctor.request, "GET", f"/documents/{readable}/content")
    assert after.status == 200
    assert after.body.startswith(b"%PDF")

    print("guard drill measurements:", json.dumps(drill.measured))
