"""Builders of realistic ORU^R01 messages and an MLLP client, for the tests (unit and system)."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection
from reportlab.pdfgen.canvas import Canvas

from vigie.intake.hl7.oru import INS_NIR_OID
from vigie.intake.hl7.parser import Separators, unescape
from vigie.intake.hl7.server import MllpServer, Settings
from vigie.intake.models import MllpSender

SB, EB, CR = b"\x0b", b"\x1c", b"\r"

# A typical complete blood count, as a French lab sends it (LOINC codes, SI units).
CBC = [
    "OBX|1|NM|718-7^Hémoglobine^LN||9.1|g/dL|12.0-16.0|L|||F",
    "OBX|2|NM|6690-2^Leucocytes^LN||7.2|10*9/L|4.0-10.0|N|||F",
    "OBX|3|NM|777-3^Plaquettes^LN||612|10*9/L|150-400|HH|||F",
    "OBX|4|SN|5130-0^D-dimères^LN||<^0.5|mg/L|<0.5||||F",
    "OBX|5|CE|882-1^Groupe ABO^LN||A^Groupe A^L||||||F",
    "OBX|6|TX|8251-1^Commentaire^LN||Contrôle conseillé\\.br\\dans 15 jours||||||F",
]


@dataclass
class Oru:
    """An ORU^R01 with sensible defaults; change one field to make a bad input."""

    control_id: str = "MSG00001"
    version: str = "2.5.1"
    charset: str = "UNICODE UTF-8"
    sending_application: str = "LABWARE"
    sending_facility: str = "BIOMED"
    message_type: str = "ORU^R01^ORU_R01"
    encoding_characters: str = "^~\\&"
    ins: str = ""
    ipp: str = "L123456"
    ipp_authority: str = "BIOMED"
    name: str = "DURAND^Camille^Marie"
    birth_date: str = "19850314"
    sex: str = "F"
    service: str = "NFS^Numération formule sanguine^L"
    observed_at: str = "202611020830"
    ordering: str = "10003^MARTIN^Jeanne^^^Dr"
    interpreter: str = "20005&LEROY&Paul&&&Dr"
    observations: Sequence[str] = field(default_factory=lambda: list(CBC))
    extra_segments: Sequence[str] = ()

    def pid3(self) -> str:
        reps = []
        if self.ipp:
            reps.append(f"{self.ipp}^^^{self.ipp_authority}^PI")
        if self.ins:
            reps.append(f"{self.ins}^^^ASIP-SANTE-INS-NIR&{INS_NIR_OID}&ISO^INS")
        return "~".join(reps)

    def text(self) -> str:
        msh = (
            f"MSH|{self.encoding_characters}|{self.sending_application}|{self.sending_facility}"
            f"|VIGIE|CLINIQUE|20261102094500||{self.message_type}|{self.control_id}|P"
            f"|{self.version}||||||{self.charset}"
        )
        segments = [
            msh,
            f"PID|1||{self.pid3()}||{self.name}||{self.birth_date}|{self.sex}",
            f"OBR|1|CMD42|LAB42|{self.service}|||{self.observed_at}|||||||||{self.ordering}"
            f"||||||||||||||||{self.interpreter}",
            *self.observations,
            *self.extra_segments,
        ]
        return "\r".join(segments) + "\r"

    def encode(self, codec: str = "") -> bytes:
        codecs = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii", "": "ascii"}
        return self.text().encode(codec or codecs.get(self.charset, "utf-8"))


def small_pdf(text: str = "Compte rendu du laboratoire") -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=1)
    canvas.drawString(72, 720, text)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def ed_segment(pdf: bytes, set_id: int = 1) -> str:
    data = base64.b64encode(pdf).decode("ascii")
    return f"OBX|{set_id}|ED|PDF^Compte rendu PDF^L||LABWARE^AP^PDF^Base64^{data}||||||F"


def frame(message: bytes) -> bytes:
    return SB + message + EB + CR


class MllpClient:
    """A blocking MLLP client, as a lab's interface engine would be."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, message: bytes) -> None:
        self.sock.sendall(frame(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, timeout: float = 30.0) -> bytes:
        """The next ACK (without its framing); raises TimeoutError past the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            start = self.buffer.find(SB)
            end = self.buffer.find(EB + CR, start + 1)
            if start != -1 and end != -1:
                message = self.buffer[start + 1 : end]
                self.buffer = self.buffer[end + 2 :]
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no ACK before the deadline")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buffer += chunk

    def exchange(self, message: bytes) -> bytes:
        self.send(message)
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def ack_fields(ack: bytes) -> dict[str, str]:
    """MSA-1, MSA-2, MSA-3, ERR-3.1 and the MSH sender/receiver of an ACK, for assertions."""
    segments = {
        line.split("|", 1)[0]: line.split("|") for line in ack.decode("latin-1").split("\r") if line
    }
    msh, msa = segments["MSH"], segments["MSA"]
    err = segments.get("ERR", [])

    def at(fields: list[str], n: int) -> str:
        return unescape(fields[n], Separators()) if n < len(fields) else ""

    return {
        # MSH fields are numbered from MSH-1 (the separator itself), hence the offset.
        "sending_application": at(msh, 2),
        "sending_facility": at(msh, 3),
        "receiving_application": at(msh, 4),
        "receiving_facility": at(msh, 5),
        "type": msh[8] if len(msh) > 8 else "",
        "code": at(msa, 1),
        "control_id": at(msa, 2),
        "text": at(msa, 3),
        "error_code": err[3].split("^")[0] if len(err) > 3 else "",
        "error_location": err[2] if len(err) > 2 else "",
        "error_message": at(err, 8),
    }


def biomed() -> MllpSender:
    """The configured sender the tests' messages come from (Oru's defaults are BIOMED's)."""
    sender, _created = MllpSender.objects.get_or_create(
        name="BIOMED", defaults={"source_system": "BIOMED"}
    )
    return sender


@contextmanager
def running(settings: Settings) -> Iterator[MllpServer]:
    """The MLLP server on its own event loop in a thread of this process, for tests that
    speak to it over a real socket; stopped (and waited for) at the end of the block.

    On the tests' SQLite database (in memory, shared cache) a table written by one
    connection cannot be read by another until the write commits: SQLite answers "database
    table is locked" at once, where a file database in WAL mode (production) lets readers
    read. So there, and only there, the rounds prepare and commit on one thread (one
    connection), one after the other; elsewhere they overlap as in production.
    """
    mllp = MllpServer(settings)
    if connection.vendor == "sqlite" and getattr(connection, "is_in_memory_db", bool)():
        mllp.rounds.committer.shutdown()
        mllp.rounds.committer = mllp.rounds.preparer
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            task = asyncio.create_task(mllp.serve())
            await mllp.ready.wait()
            started.set()
            await task

        loop.run_until_complete(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(20), "the server did not start"
    try:
        yield mllp
    finally:
        loop.call_soon_threadsafe(mllp.stop)
        thread.join(30)
        assert not thread.is_alive(), "the server did not stop"
        loop.close()
