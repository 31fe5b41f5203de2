"""Nothing lost over MLLP: `vigie intake mllp` killed with SIGKILL during a burst (issue 20).

Eight real connections send ORU^R01 messages as fast as the server acknowledges them (each
waits for its ACK, as a lab's interface engine does), so the server is committing rounds of
several messages (group commit) when it dies. Several runs, each killed at a random moment;
after each, a new server is started and every message sent but not acknowledged is sent
again (what a sender does), together with a few that were acknowledged (a lost ACK).

Run with one listener process and with two sharing the port (`--processes 2`), each
killed whole (the process group, parent and listeners at once, as a power cut would).

Afterwards: every acknowledged message is stored exactly once (one ReceivedMessage, one
Document, whose blob opens and matches its hash); every message never acknowledged is
stored at most once; no document exists without its message; `vault fsck` finds no missing
or corrupt blob; the audit chain verifies.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import VIGIE, System
from tests.test_mllp_server import SEED, _read_line
from vigie.intake.hl7.testing import MllpClient, Oru, ack_fields

pytestmark = pytest.mark.slow

RUNS = 4
CONNECTIONS = 8

CHECK = """
import json, sys
from collections import Counter
from vigie.intake.models import ReceivedMessage
from vigie.records.content import verify
from vigie.records.models import Document
rows = list(ReceivedMessage.objects.filter(channel="hl7").values_list("control_id", "document_id"))
documents = {d.pk: d for d in Document.objects.all()}
problems = {}
for control_id, document_id in rows:
    document = documents.get(document_id)
    if document is None:
        problems[control_id] = "no document"
        continue
    try:
        verify(document)
    except Exception as exc:
        problems[control_id] = repr(exc)
print(json.dumps({
    "per_control_id": dict(Counter(c for c, _ in rows)),
    "documents": len(documents),
    "referenced": len({d for _, d in rows}),
    "problems": problems,
}))
"""


@dataclass
class Sent:
    acked: set[str] = field(default_factory=set)
    unacked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _start(system: System, processes: int) -> tuple[subprocess.Popen[str], int]:
    process = system.popen(
        [
            *VIGIE,
            "intake",
            "mllp",
            "--port",
            "0",
            "--sender",
            "biomed-engine",
            "--processes",
            str(processes),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        # A group of its own: the kill takes every listener, and nothing of this test.
        start_new_session=True,
    )
    line = _read_line(process, 60)
    assert line.startswith("listening on mllp://127.0.0.1:"), line
    return process, int(line.rsplit(":", 1)[1])


def _burst(port: int, tag: str, sent: Sent, first_ack: threading.Event) -> list[threading.Thread]:
    def client(index: int) -> None:
        try:
            connection = MllpClient("127.0.0.1", port, timeout=30)
        except OSError:
            return
        n = 0
        try:
            while True:
                n += 1
                control_id = f"{tag}C{index}N{n}"
                with sent.lock:
                    sent.unacked.add(control_id)  # until its AA is read
                try:
                    answer = ack_fields(connection.exchange(Oru(control_id=control_id).encode()))
                except (OSError, ConnectionError, TimeoutError):
                    return  # the server died: this one stays unacknowledged
                assert answer["code"] == "AA", answer
                assert answer["control_id"] == control_id
                with sent.lock:
                    sent.unacked.discard(control_id)
                    sent.acked.add(control_id)
                first_ack.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    return threads


def _resend(port: int, control_ids: list[str]) -> None:
    connection = MllpClient("127.0.0.1", port, timeout=60)
    try:
        for control_id in control_ids:
            answer = ack_fields(connection.exchange(Oru(control_id=control_id).encode()))
            assert answer["code"] == "AA", (control_id, answer)
    finally:
        connection.close()


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_during_a_burst_loses_no_acknowledged_message(
    system: System, processes: int
) -> None:
    system.run("shell", "-c", SEED)
    rng = random.Random(20261207)
    sent = Sent()
    resent_unacked: set[str] = set()
    stored_before_resend: dict[str, int] = {}
    for run in range(RUNS):
        process, port = _start(system, processes)
        try:
            first_ack = threading.Event()
            threads = _burst(port, f"R{run}", sent, first_ack)
            assert first_ack.wait(60), "no message acknowledged"
            # Killed in the middle of the burst: rounds are in flight.
            time.sleep(rng.uniform(0.2, 1.0))
            _kill_group(process)
            for thread in threads:
                thread.join(60)
        finally:
            _kill_group(process)
        # What survived of the unacknowledged ones, before they are sent again.
        counts = _check(system)["per_control_id"]
        for control_id in sent.unacked - resent_unacked:
            stored_before_resend[control_id] = counts.get(control_id, 0)
        # A new server; the sender sends again what it has no ACK for, and a few it has
        # (an ACK lost on the way back looks the same to it).
        process, port = _start(system, processes)
        try:
            again = sorted(sent.unacked - resent_unacked)
            again += rng.sample(sorted(sent.acked), min(3, len(sent.acked)))
            _resend(port, again)
            resent_unacked |= sent.unacked
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
        finally:
            _kill_group(process)

    state = _check(system)
    per_control_id: dict[str, int] = state["per_control_id"]
    assert len(sent.acked) >= RUNS * CONNECTIONS, len(sent.acked)
    # Every acknowledged message stored exactly once, its blob intact.
    assert {c: per_control_id.get(c, 0) for c in sent.acked if per_control_id.get(c) != 1} == {}
    assert state["problems"] == {}
    # Every message never acknowledged by the killed server was stored at most once then,
    # and exactly once after the sender's resend.
    assert all(n <= 1 for n in stored_before_resend.values()), stored_before_resend
    assert all(per_control_id.get(c) == 1 for c in resent_unacked)
    # Nothing else, and no document without its message (nor two for one).
    assert set(per_control_id) == sent.acked | resent_unacked
    assert state["documents"] == state["referenced"] == len(per_control_id)
    fsck = system.run("vault", "fsck", check=False)
    assert "MISSING BLOB" not in fsck.stdout
    assert "CORRUPT" not in fsck.stdout
    verify = system.run("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The drill's counts, for the report (pytest -s shows them).
    survived = sum(stored_before_resend.values())
    print(
        f"\nmllp crash drill ({processes} process(es)): {RUNS} kills, {len(sent.acked)} acknowledged (each stored once), "
        f"{len(stored_before_resend)} in flight at a kill: {survived} stored before the "
        f"resend, {len(stored_before_resend) - survived} absent; all stored once after it"
    )


def _check(system: System) -> dict[str, Any]:
    result = system.run("shell", "-c", CHECK)
    state: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return state
