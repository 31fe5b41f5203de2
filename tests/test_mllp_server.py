"""A real `vigie intake mllp` process, a lab's batch over real sockets, every ACK checked."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import VIGIE, System
from vigie.intake.hl7.testing import MllpClient, Oru, ack_fields, ed_segment, small_pdf

pytestmark = pytest.mark.slow

SEED = """
from datetime import date
from vigie.records.models import Patient, PatientIdentifier
patient = Patient.objects.create(ipp="IPP0000001", ins="285037500100132", family_name="DURAND",
                                 given_names="Camille", birth_date=date(1985, 3, 14), sex="F")
PatientIdentifier.objects.create(patient=patient, source="BIOMED", value="L123456")
from vigie.intake.models import MllpSender
MllpSender.objects.create(name="biomed-engine", source_system="BIOMED")
"""

COUNT = """
import json
from vigie.intake.models import ReceivedMessage
from vigie.records.models import Document, PendingDocument
from vigie.audit.models import AuditEvent
print(json.dumps({
    "documents": Document.objects.count(),
    "pending": PendingDocument.objects.count(),
    "control_ids": sorted(ReceivedMessage.objects.values_list("control_id", flat=True)),
    "patients": sorted(set(Document.objects.values_list("patient__ipp", flat=True))),
    "received_events": AuditEvent.objects.filter(action="intake.received").count(),
    "rejected_events": AuditEvent.objects.filter(action="intake.rejected").count(),
    "duplicate_events": AuditEvent.objects.filter(action="intake.duplicate").count(),
    "listeners": {
        action: sorted((e.extra["process"], e.extra["processes"])
                       for e in AuditEvent.objects.filter(action=action))
        for action in ("intake.mllp.started", "intake.mllp.stopped")
    },
}))
"""


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                return process.stdout.readline()
            if process.poll() is not None:
                break
    raise AssertionError("the MLLP server printed nothing before the deadline")


def _batch() -> list[tuple[bytes, str]]:
    """(message, expected MSA-1): good results among the kinds of bad input a lab sends."""
    pdf = small_pdf("Compte rendu BIOMED")
    batch: list[tuple[bytes, str]] = []
    for n in range(12):
        batch.append(
            (
                Oru(
                    control_id=f"OK{n:02d}", version=["2.3", "2.4", "2.5", "2.5.1"][n % 4]
                ).encode(),
                "AA",
            )
        )
    batch += [
        (Oru(control_id="PDF01", observations=[ed_segment(pdf)]).encode(), "AA"),
        (Oru(control_id="INS01", ipp="", ins="285037500100132").encode(), "AA"),
        (Oru(control_id="LATIN1", charset="8859/1").encode(), "AA"),
        (Oru(control_id="UNKNOWN1", ipp="L000000").encode(), "AA"),  # pending, to reconcile
        (Oru(control_id="OK00").encode(), "AA"),  # a retry: acknowledged, not stored again
        (Oru(control_id="").encode(), "AR"),
        (Oru(control_id="BADSEP", encoding_characters="^^\\&").encode(), "AR"),
        (Oru(control_id="BADCHARSET", charset="UNICODE UTF-8").encode("latin-1"), "AR"),
        (Oru(control_id="ADT", message_type="ADT^A01").encode(), "AR"),
        (Oru(control_id="CUTPDF", observations=[ed_segment(pdf)[:-20] + "||||||F"]).encode(), "AE"),
        (Oru(control_id="BADINS", ipp="", ins="285037500100133").encode(), "AE"),
    ]
    return batch


@pytest.mark.parametrize("processes", [1, 2])
def test_a_batch_over_real_sockets_is_acknowledged_and_stored_exactly_once(
    system: System, processes: int
) -> None:
    """The same batch, answered and stored the same by one listener process or by two
    sharing the port (`--processes`): the kernel spreads the connections, and a retry landing
    in the other process is still a duplicate."""
    system.run("shell", "-c", SEED)
    process = system.popen(
        [
            *VIGIE,
            "intake",
            "mllp",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--sender",
            "biomed-engine",
            "--processes",
            str(processes),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = _read_line(process, 60)
        assert line.startswith("listening on mllp://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        batch = _batch()
        assert len(batch) >= 20
        # Two connections at once, like a lab with two interface channels; within each,
        # messages go one after another and the ACKs come back in the same order.
        halves = {i: batch[i::4] for i in range(4)}
        answers: dict[int, list[dict[str, str]]] = {}
        errors: list[BaseException] = []

        def send(index: int) -> None:
            client = MllpClient("127.0.0.1", port)
            try:
                answers[index] = [
                    ack_fields(client.exchange(message)) for message, _ in halves[index]
                ]
            except BaseException as exc:
                errors.append(exc)
            finally:
                client.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        for index, sent in halves.items():
            for (message, expected), got in zip(sent, answers[index], strict=True):
                control_id = message.split(b"|")[9].decode()
                assert got["code"] == expected, (control_id, got)
                assert got["control_id"] == control_id
                assert got["receiving_application"] == "LABWARE"
                if expected != "AA":
                    assert got["error_code"], got
                    assert got["text"], got
        # A late retry of a message already taken, on a fresh connection.
        late = MllpClient("127.0.0.1", port)
        try:
            assert ack_fields(late.exchange(Oru(control_id="PDF01").encode()))["code"] == "AA"
        finally:
            late.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    counts = json.loads(system.run("shell", "-c", COUNT).stdout.strip().splitlines()[-1])
    stored = [f"OK{n:02d}" for n in range(12)] + ["INS01", "LATIN1", "PDF01"]
    assert counts["documents"] == len(stored)
    assert counts["pending"] == 1
    assert counts["control_ids"] == sorted([*stored, "UNKNOWN1"])
    assert counts["patients"] == ["IPP0000001"]
    assert counts["received_events"] == len(stored) + 1
    assert counts["rejected_events"] == 6
    assert counts["duplicate_events"] == 2
    # Each listener said when it started and when it stopped (a SIGTERM drains every one).
    each = [[i, processes] for i in range(processes)]
    assert counts["listeners"] == {"intake.mllp.started": each, "intake.mllp.stopped": each}
    verify = system.run("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_listener_that_dies_takes_the_group_down(system: System) -> None:
    """With --processes 2, a listener killed on its own stops the other and the parent
    exits with an error (systemd restarts the service whole, never silently short of one);
    the parent killed, the kernel stops the listeners (nothing keeps the port)."""
    import psutil

    system.run("shell", "-c", SEED)
    argv = [*VIGIE, "intake", "mllp", "--port", "0", "--sender", "biomed-engine"]
    for victim in ("listener", "parent"):
        process = system.popen(
            [*argv, "--processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert _read_line(process, 60).startswith("listening on mllp://")
            listeners = psutil.Process(process.pid).children()
            assert len(listeners) == 2
            if victim == "listener":
                listeners[0].kill()
                _out, err = process.communicate(timeout=60)
                assert process.returncode != 0
                assert "an MLLP listener process failed" in err
            else:
                process.kill()
                process.wait(30)
            _gone, alive = psutil.wait_procs(listeners, timeout=30)
            assert alive == [], victim
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_second_group_on_the_same_port_is_refused_not_joined(system: System) -> None:
    """SO_REUSEPORT lets any process of the same user bind a port its group holds: a second
    `--processes 2` started by mistake (a manual test beside the service) bound too and took
    a share of the labs' connections. It is refused, with why, and the first keeps serving."""
    system.run("shell", "-c", SEED)
    argv = [*VIGIE, "intake", "mllp", "--host", "127.0.0.1", "--sender", "biomed-engine"]
    first = system.popen(
        [*argv, "--port", "0", "--processes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = _read_line(first, 60)
        assert line.startswith("listening on mllp://127.0.0.1:"), line
        port = line.rsplit(":", 1)[1].strip()
        second = system.popen(
            [*argv, "--port", port, "--processes", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = second.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            pytest.fail("a second group started on the port the first one holds")
        assert second.returncode != 0, out
        assert "listening" not in out
        assert f"another `vigie intake mllp` already listens on port {port}" in err
        # The first group still answers.
        message, expected = _batch()[0]
        client = MllpClient("127.0.0.1", int(port))
        try:
            assert ack_fields(client.exchange(message))["code"] == expected
        finally:
            client.close()
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            first.kill()
            first.communicate()


def test_a_stop_closes_idle_connections_cleanly_without_a_traceback(system: System) -> None:
    """Labs keep their MLLP connections open between messages. A SIGTERM (systemd's stop,
    every restart) closes those idle connections: each sees the end of the stream, and the
    service's log shows its two lines, not one traceback per open connection (Python 3.11's
    streams log a cancelled connection task as an "Exception in callback")."""
    system.run("shell", "-c", SEED)
    argv = [*VIGIE, "intake", "mllp", "--host", "127.0.0.1", "--port", "0"]
    process = system.popen(
        [*argv, "--sender", "biomed-engine"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    clients: list[MllpClient] = []
    try:
        line = _read_line(process, 60)
        port = int(line.rsplit(":", 1)[1])
        # One connection that has sent a message and waits for the next, one that never did.
        used, silent = MllpClient("127.0.0.1", port), MllpClient("127.0.0.1", port)
        clients += [used, silent]
        assert ack_fields(used.exchange(Oru(control_id="IDLE01").encode()))["code"] == "AA"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "stopped" in out
        assert "Traceback" not in err, err
        assert "Exception in callback" not in err, err
        for client in clients:
            client.sock.settimeout(5)
            assert client.sock.recv(1) == b""  # closed by the server, not left hanging
    finally:
        for client in clients:
            client.close()
        if process.poll() is None:
            process.kill()
            process.wait()
