"""HL7 intake end to end in one process: the bad-input corpus through `handle()`, MLLP
deframing, and the asyncio server on a real loopback socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from vigie import vault
from vigie.audit.models import AuditEvent
from vigie.intake.hl7.handler import handle
from vigie.intake.hl7.server import Framer, MllpServer, Settings
from vigie.intake.hl7.testing import (
    CBC,
    EB,
    SB,
    MllpClient,
    Oru,
    ack_fields,
    biomed,
    ed_segment,
    frame,
    running,
    small_pdf,
)
from vigie.intake.models import MllpSender, ReceivedMessage
from vigie.records.content import stream_verified
from vigie.records.models import Document, PatientIdentifier, PendingDocument
from vigie.records.results_store import open_attachment, open_results
from vigie.records.testing import make_patient


def _stored() -> tuple[int, int, int]:
    return (
        Document.objects.count(),
        PendingDocument.objects.count(),
        ReceivedMessage.objects.count(),
    )


@pytest.fixture
def known(vault_home: Path):
    """A patient the lab BIOMED knows as L123456."""
    patient = make_patient("DURAND")
    PatientIdentifier.objects.create(patient=patient, source="BIOMED", value="L123456")
    return patient


# -- the bad-input corpus, each with its expected ACK ---------------------------------------


def _truncated_pdf_segment() -> str:
    pdf = small_pdf()
    # Cut on a 4-byte boundary so the Base64 itself is valid: the PDF inside is what is short.
    cut = pdf[: (len(pdf) // 2) // 3 * 3]
    return ed_segment(cut)


CORPUS = [
    # (name, message bytes, MSA-1, ERR code, what the text must say, stored?)
    ("wrong separators", Oru(encoding_characters="^^\\&").encode(), "AR", "102", "MSH-2", False),
    (
        "field separator is a letter",
        Oru().encode().replace(b"MSH|", b"MSHA", 1),
        "AR",
        "102",
        "MSH-1",
        False,
    ),
    ("missing MSH-10", Oru(control_id="").encode(), "AR", "101", "MSH-10 missing", False),
    (
        "latin-1 bytes declared UTF-8",
        Oru(charset="UNICODE UTF-8").encode("latin-1"),
        "AR",
        "102",
        "MSH-18",
        False,
    ),
    ("UTF-8 bytes declared nothing", Oru(charset="").encode("utf-8"), "AR", "102", "ASCII", False),
    ("unknown charset", Oru(charset="EBCDIC").encode("utf-8"), "AR", "103", "MSH-18", False),
    ("unsupported version", Oru(version="2.7").encode(), "AR", "203", "MSH-12", False),
    ("not a result", Oru(message_type="ADT^A08").encode(), "AR", "200", "ORU^R01", False),
    ("not HL7", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "AR", "100", "MSH", False),
    (
        "truncated base64 PDF",
        Oru(observations=[ed_segment(small_pdf())[: -(7 + 10)] + "||||||F"]).encode(),
        "AE",
        "102",
        "not valid Base64",
        False,
    ),
    (
        "truncated PDF",
        Oru(observations=[_truncated_pdf_segment()]).encode(),
        "AE",
        "102",
        "truncated",
        False,
    ),
    (
        "an HTML page as the PDF",
        Oru(observations=[ed_segment(b"<html>Erreur 500</html>")]).encode(),
        "AE",
        "102",
        "not a application/pdf",
        False,
    ),
    ("a wrong INS key", Oru(ipp="", ins="285037500100133").encode(), "AE", "102", "INS", False),
    ("no OBR-7", Oru(observed_at="").encode(), "AE", "101", "OBR-7", False),
    ("good", Oru().encode(), "AA", "", "", True),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "code", "error_code", "needle", "stored"),
    [pytest.param(*case[1:], id=case[0]) for case in CORPUS],
)
def test_the_bad_input_corpus_gets_its_expected_ack(known, raw, code, error_code, needle, stored):
    before = _stored()
    reply = handle(raw, sender=biomed())
    fields = ack_fields(reply.ack)
    assert (fields["code"], fields["error_code"]) == (code, error_code), fields
    assert needle in fields["text"]
    assert needle in fields["error_message"]
    after = _stored()
    if stored:
        assert after[0] == before[0] + 1
        assert after[2] == before[2] + 1
    else:
        assert after == before, "a refused message left something behind"
        event = AuditEvent.objects.filter(action="intake.rejected").latest("seq")
        assert event.outcome == "failure"
        assert needle in event.reason


@pytest.mark.django_db
def test_a_known_patient_gets_the_message_kept_with_its_values(known):
    reply = handle(Oru().encode(), sender=biomed())
    assert reply.code == "AA"
    fields = ack_fields(reply.ack)
    assert (fields["control_id"], fields["receiving_application"]) == ("MSG00001", "LABWARE")
    document = Document.objects.get(pk=reply.document_id)
    assert document.patient == known
    assert document.title == "Numération formule sanguine"
    assert str(document.clinical_date) == "2026-11-02"
    assert document.author == "Dr Paul LEROY"
    assert document.source_system == "BIOMED"
    raw = Oru().encode()
    # The message exactly as received is the document; its values are sealed beside it.
    assert b"".join(stream_verified(document)) == raw
    assert document.content_type == "application/hl7-v2"
    results = open_results(document)
    assert results is not None
    assert [o.value for o in results.observations][:3] == ["9.1", "7.2", "612"]
    # Keyed by the authenticated sender first: no one else can take BIOMED's control ids.
    taken = ReceivedMessage.objects.get(
        channel="hl7", source="BIOMED|LABWARE^BIOMED", control_id="MSG00001"
    )
    assert taken.document_id == document.pk
    event = AuditEvent.objects.filter(action="intake.received").latest("seq")
    assert event.extra["control_id"] == "MSG00001"


@pytest.mark.django_db
def test_an_embedded_pdf_is_kept_as_sent_beside_the_values(known):
    pdf = small_pdf("Compte rendu signé du laboratoire")
    raw = Oru(observations=[*CBC[:1], ed_segment(pdf, 2)]).encode()
    reply = handle(raw, sender=biomed())
    assert reply.code == "AA"
    document = Document.objects.get(pk=reply.document_id)
    assert b"".join(stream_verified(document)) == raw
    assert open_attachment(document) == ("application/pdf", pdf)
    results = open_results(document)
    assert results is not None
    assert [o.label for o in results.observations] == ["Hémoglobine"]


@pytest.mark.django_db
def test_a_patient_matched_by_ins_alone(vault_home):
    patient = make_patient("MARTIN")
    reply = handle(Oru(ipp="", ins=patient.ins or "").encode(), sender=biomed())
    assert reply.code == "AA"
    assert Document.objects.get(pk=reply.document_id).patient == patient


@pytest.mark.django_db
def test_an_unknown_patient_is_accepted_and_waits_for_reconciliation(known):
    # AA, not AE: the message is delivered and kept (encrypted, attached to nobody); only an
    # administrator can say whose it is, and a resend would not change that.
    reply = handle(Oru(ipp="L999999", name="INCONNU^Jean").encode(), sender=biomed())
    assert reply.code == "AA"
    assert reply.document_id == ""
    pending = PendingDocument.objects.get(pk=reply.pending_id)
    assert pending.identifiers == {"ipp": "L999999", "ipp_source": "BIOMED"}
    assert pending.demographics["family_name"] == "INCONNU"
    assert "no patient has this IPP from BIOMED" in pending.reason
    assert Document.objects.count() == 0
    assert ReceivedMessage.objects.get(control_id="MSG00001").pending_id == pending.pk


@pytest.mark.django_db
def test_a_repeated_control_id_is_acknowledged_without_storing_twice(known):
    first = handle(Oru().encode(), sender=biomed())
    again = handle(Oru().encode(), sender=biomed())
    assert first.code == again.code == "AA"
    assert again.duplicate
    assert again.document_id == first.document_id
    assert _stored() == (1, 0, 1)
    assert AuditEvent.objects.filter(action="intake.duplicate").count() == 1
    # The same control id from another sender is another message.
    other = handle(
        Oru(sending_facility="AUTRELAB", ipp_authority="BIOMED").encode(), sender=biomed()
    )
    assert other.code == "AA"
    assert not other.duplicate
    assert _stored()[2] == 2


@pytest.mark.django_db
def test_a_local_authority_ipp_matches_the_clinic_ipp(vault_home):
    patient = make_patient("LEGRAND")
    oru = Oru(ipp=patient.ipp, ipp_authority="CLINIQUE")
    # Another system's number, BIOMED cannot speak for it: refused, nothing kept.
    assert handle(oru.encode(), sender=biomed()).code == "AR"
    assert _stored() == (0, 0, 0)
    reply = handle(
        Oru(control_id="2", ipp=patient.ipp, ipp_authority="CLINIQUE").encode(),
        sender=biomed(),
        local_authority="clinique",
    )
    assert Document.objects.get(pk=reply.document_id).patient == patient


@pytest.mark.django_db
def test_storage_trouble_asks_the_sender_to_retry(known, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vault, "seal", full)
    reply = handle(Oru().encode(), sender=biomed())
    fields = ack_fields(reply.ack)
    assert (fields["code"], fields["error_code"]) == ("AE", "207")
    assert "send it again later" in fields["text"]
    assert _stored() == (0, 0, 0)
    monkeypatch.undo()
    assert (
        handle(Oru().encode(), sender=biomed()).code == "AA"
    )  # the retry is not taken for a duplicate


@pytest.mark.django_db
def test_an_unexpected_failure_is_an_ae_not_a_traceback(known, monkeypatch):
    import vigie.intake.hl7.handler as handler

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(handler, "to_results", broken)
    fields = ack_fields(handle(Oru().encode(), sender=biomed()).ack)
    assert (fields["code"], fields["error_code"]) == ("AE", "207")


# -- MLLP framing ---------------------------------------------------------------------------


def test_the_framer_splits_frames_across_any_chunking():
    messages = [b"MSH|one", b"MSH|two\rPID|x", b"MSH|three"]
    stream = b"".join(frame(m) for m in messages)
    for size in (1, 2, 3, 7, len(stream)):
        framer = Framer(max_bytes=1024)
        got = [
            f.payload
            for i in range(0, len(stream), size)
            for f in framer.feed(stream[i : i + size])
        ]
        assert got == messages, size


def test_the_framer_bounds_an_oversized_frame():
    framer = Framer(max_bytes=1024)
    big = b"MSH|^~\\&|A|B|||||ORU^R01|BIG1|P|2.5.1\r" + b"x" * 100_000
    frames = [
        f for i in range(0, len(big) + 3, 4096) for f in framer.feed(frame(big)[i : i + 4096])
    ]
    assert len(frames) == 1
    assert "larger than the limit of 1024 bytes" in frames[0].problem
    assert len(frames[0].payload) <= 4096  # only the head is kept
    assert b"BIG1" in frames[0].payload


def test_the_framer_refuses_bytes_outside_a_frame_and_a_cut_frame():
    [junk] = Framer(1024).feed(b"GET / HTTP/1.1\r\n")
    assert junk.close
    assert "outside an MLLP frame" in junk.problem
    framer = Framer(1024)
    frames = list(framer.feed(SB + b"MSH|half" + SB + b"MSH|whole" + EB + b"\r"))
    assert "incomplete MLLP frame" in frames[0].problem
    assert frames[1].payload == b"MSH|whole"
    assert not frames[1].problem


# -- the asyncio server on a real socket -----------------------------------------------------


@pytest.fixture
def server(audit_committing, vault_home) -> Iterator[MllpServer]:
    # One worker: the test database is SQLite in shared-cache memory, whose table locks do
    # not wait (see `running`; tests/test_mllp_server.py runs several workers on a file).
    biomed()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        max_message_bytes=64 * 1024,
        idle_timeout=20,
        workers=1,
        sender="BIOMED",
    )
    with running(settings) as mllp:
        yield mllp


def test_the_server_acknowledges_messages_and_connections_concurrently(server, known):
    first, second = MllpClient("127.0.0.1", server.port), MllpClient("127.0.0.1", server.port)
    try:
        # Several messages on one connection, ACKs in order; another connection meanwhile.
        for n in range(3):
            first.send(Oru(control_id=f"A{n}").encode())
        second.send(Oru(control_id="B0").encode())
        acks = [ack_fields(first.receive()) for _ in range(3)]
        assert [(a["code"], a["control_id"]) for a in acks] == [
            ("AA", "A0"),
            ("AA", "A1"),
            ("AA", "A2"),
        ]
        assert ack_fields(second.receive())["control_id"] == "B0"
        # A bad one in the middle gets its AR and the connection carries on.
        first.send(Oru(control_id="").encode())
        assert ack_fields(first.receive())["code"] == "AR"
        assert ack_fields(first.exchange(Oru(control_id="A0").encode()))["code"] == "AA"
    finally:
        first.close()
        second.close()
    assert Document.objects.count() == 4
    assert ReceivedMessage.objects.count() == 4


def test_the_server_survives_oversized_and_garbage_frames(server, known):
    client = MllpClient("127.0.0.1", server.port)
    try:
        big = Oru(control_id="BIG", observations=[ed_segment(b"%PDF-" + b"0" * 100_000)]).encode()
        fields = ack_fields(client.exchange(big))
        assert (fields["code"], fields["control_id"]) == ("AR", "BIG")
        assert "larger than the limit" in fields["text"]
        assert ack_fields(client.exchange(Oru(control_id="AFTER").encode()))["code"] == "AA"
    finally:
        client.close()
    junk = MllpClient("127.0.0.1", server.port)
    try:
        junk.send_raw(b"GET / HTTP/1.1\r\n\r\n")
        assert ack_fields(junk.receive())["code"] == "AR"
        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            junk.sock.settimeout(deadline - time.monotonic())
            closed = junk.sock.recv(1) == b""
        assert closed, "the server kept a connection that does not speak MLLP"
    finally:
        junk.close()
    fresh = MllpClient("127.0.0.1", server.port)
    try:
        assert ack_fields(fresh.exchange(Oru(control_id="LAST").encode()))["code"] == "AA"
    finally:
        fresh.close()
    assert Document.objects.count() == 2


def test_a_sender_revoked_while_connected_is_hung_up_on(server, known):
    client = MllpClient("127.0.0.1", server.port)
    try:
        assert ack_fields(client.exchange(Oru(control_id="BEFORE").encode()))["code"] == "AA"
        MllpSender.objects.filter(name="BIOMED").update(revoked_at=timezone.now())
        # The next message on the same connection: no ACK, the connection is closed.
        client.send(Oru(control_id="AFTER").encode())
        with pytest.raises(ConnectionError):
            client.receive(timeout=20)
    finally:
        client.close()
    assert list(ReceivedMessage.objects.values_list("control_id", flat=True)) == ["BEFORE"]
    assert AuditEvent.objects.filter(action="intake.mllp.refused").count() == 1


def test_a_round_that_cannot_be_read_closes_the_connection_without_an_ack(
    server, known, monkeypatch
):
    from vigie.intake.hl7.rounds import MessageCommitter

    def down(self, batch):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(MessageCommitter, "_prepare", down)
    client = MllpClient("127.0.0.1", server.port)
    try:
        client.send(Oru(control_id="LOST").encode())
        with pytest.raises(ConnectionError):
            client.receive(timeout=20)
    finally:
        client.close()
    monkeypatch.undo()
    assert ReceivedMessage.objects.count() == 0
    # The server itself carries on: the resend is stored.
    again = MllpClient("127.0.0.1", server.port)
    try:
        assert ack_fields(again.exchange(Oru(control_id="LOST").encode()))["code"] == "AA"
    finally:
        again.close()
