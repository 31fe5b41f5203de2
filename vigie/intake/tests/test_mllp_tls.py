"""MLLP requires authenticated senders (issue 16, part 3): mutual TLS on real sockets.

The server runs in this process (a thread with its own event loop) on a loopback port with
`--tls-cert/--tls-key/--tls-client-ca`; clients are real TLS sockets. A refused client gets
no ACK and nothing is stored, whatever it sends.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.core.management import call_command

from vigie.audit.models import AuditEvent
from vigie.intake.hl7.server import MllpServer, Settings, frame
from vigie.intake.hl7.testing import CR, EB, Oru, ack_fields, running
from vigie.intake.models import MllpSender, ReceivedMessage
from vigie.intake.senders import add_sender, fingerprint, revoke_sender
from vigie.lib.testing import (
    Authority,
    certificate_authority,
    issue_client,
    revocation_list,
    self_signed,
)
from vigie.records.models import Document, PatientIdentifier, PendingDocument
from vigie.records.testing import make_patient

Pair = tuple[Path, Path]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    """The server's certificate, the clinic's client CA, and a stranger's CA."""
    server = self_signed(tmp_path, "127.0.0.1", names=("server.crt", "server.key"))
    return {
        "folder": tmp_path,
        "server": server,
        "ca": certificate_authority(tmp_path, "Clinique Labs CA"),
        "stranger": certificate_authority(tmp_path, "Someone Else CA"),
    }


def _sender_for(name: str, source: str, cert: Path) -> MllpSender:
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    return add_sender(name, source_system=source, certificate=certificate, by="test")


@pytest.fixture
def mutual(
    pki: dict[str, Any],
    audit_committing: None,
    vault_home: Path,
) -> Callable[..., Any]:
    """Start the mutual-TLS server (optionally with a CRL); returns the context manager."""

    def start(crl: Path | None = None) -> Any:
        cert, key = pki["server"]
        authority: Authority = pki["ca"]
        return running(
            Settings(
                host="127.0.0.1",
                port=0,
                idle_timeout=20,
                workers=1,  # SQLite in shared-cache memory: see test_mllp.py
                tls_cert=str(cert),
                tls_key=str(key),
                tls_client_ca=str(authority.path),
                tls_crl=str(crl or ""),
            )
        )

    return start


def exchange(port: int, server_cert: Path, client: Pair | None, message: bytes) -> bytes | None:
    """The ACK the server sends back, or None when the connection was refused (handshake
    failure, or closed without an answer). A hang is a test failure, not a refusal."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(server_cert))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=15) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(frame(message))
            data = b""
            while not data.endswith(EB + CR):
                chunk = tls.recv(65536)
                if not chunk:
                    return None
                data += chunk
            return data[1:-2]
    except TimeoutError:
        raise AssertionError("the server neither answered nor refused") from None
    except (ssl.SSLError, ConnectionError):
        return None


def _nothing_stored() -> bool:
    return not (
        Document.objects.exists()
        or PendingDocument.objects.exists()
        or ReceivedMessage.objects.exists()
    )


def _known_patient() -> None:
    patient = make_patient("DURAND")
    PatientIdentifier.objects.create(patient=patient, source="BIOMED", value="L123456")


# --- who may connect ---------------------------------------------------------------------


def test_a_known_certificate_gets_aa_and_the_document_is_attributed_to_its_sender(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    lab = issue_client(pki["ca"], pki["folder"], "biomed-interface")
    sender = _sender_for("Biomed", "BIOMED", lab[0])
    # The message claims to come from another lab: it is the certificate that speaks.
    claim = Oru(sending_application="LABO-B-APP", sending_facility="LABO-B").encode()
    with mutual() as server:
        answer = exchange(server.port, pki["server"][0], lab, claim)
    assert answer is not None
    assert ack_fields(answer)["code"] == "AA"
    document = Document.objects.get()
    assert document.source_system == "BIOMED"
    event = AuditEvent.objects.filter(action="intake.received").latest("seq")
    assert (event.extra["sender"], event.extra["source_system"]) == ("Biomed", "BIOMED")
    assert "LABO-B" not in str(event.extra)
    assert ReceivedMessage.objects.get().source.startswith("BIOMED|")
    assert sender.is_active


def test_attack_no_client_certificate_is_refused_in_the_handshake(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    with mutual() as server:
        assert exchange(server.port, pki["server"][0], None, Oru().encode()) is None
    assert _nothing_stored()


def test_attack_a_certificate_from_another_ca_is_refused(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    forged = issue_client(pki["stranger"], pki["folder"], "biomed-interface")
    # Even mapped by mistake, a certificate the client CA did not sign never gets through.
    _sender_for("Biomed", "BIOMED", forged[0])
    with mutual() as server:
        assert exchange(server.port, pki["server"][0], forged, Oru().encode()) is None
    assert _nothing_stored()


def test_attack_a_certificate_of_our_ca_mapped_to_no_sender_speaks_for_nobody(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    unmapped = issue_client(pki["ca"], pki["folder"], "some-other-lab")
    with mutual() as server:
        assert exchange(server.port, pki["server"][0], unmapped, Oru().encode()) is None
    assert _nothing_stored()
    refused = AuditEvent.objects.filter(action="intake.mllp.refused").latest("seq")
    assert refused.extra["fingerprint"]


def test_attack_a_certificate_revoked_in_the_crl_is_refused(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    revoked = issue_client(pki["ca"], pki["folder"], "stolen-laptop")
    good = issue_client(pki["ca"], pki["folder"], "biomed-interface")
    _sender_for("Stolen", "BIOMED", revoked[0])
    _sender_for("Biomed", "BIOMED", good[0])
    crl = revocation_list(pki["ca"], [revoked[0]], pki["folder"] / "labs.crl")
    with mutual(crl=crl) as server:
        assert exchange(server.port, pki["server"][0], revoked, Oru().encode()) is None
        assert _nothing_stored()
        # The CRL refuses only what it lists.
        answer = exchange(server.port, pki["server"][0], good, Oru().encode())
    assert answer is not None
    assert ack_fields(answer)["code"] == "AA"


def test_attack_a_sender_revoked_by_the_administrator_is_refused(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    lab = issue_client(pki["ca"], pki["folder"], "biomed-interface")
    sender = _sender_for("Biomed", "BIOMED", lab[0])
    revoke_sender(sender, by="test")
    with mutual() as server:
        assert exchange(server.port, pki["server"][0], lab, Oru().encode()) is None
    assert _nothing_stored()


def test_attack_an_expired_certificate_is_refused(
    pki: dict[str, Any], mutual: Callable[..., Any]
) -> None:
    _known_patient()
    now = datetime.now(UTC)
    expired = issue_client(
        pki["ca"],
        pki["folder"],
        "old-interface",
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=1),
    )
    # Mapped while it was valid (written directly: `add` refuses an expired certificate).
    certificate = x509.load_pem_x509_certificate(expired[0].read_bytes())
    MllpSender.objects.create(
        name="Old",
        source_system="BIOMED",
        fingerprint=fingerprint(certificate.public_bytes(Encoding.DER)),
    )
    with mutual() as server:
        assert exchange(server.port, pki["server"][0], expired, Oru().encode()) is None
    assert _nothing_stored()


# --- who may listen where ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "mllp.clinique.example"])
def test_it_refuses_to_listen_beyond_loopback_without_mutual_tls(
    host: str, pki: dict[str, Any]
) -> None:
    cert, key = pki["server"]
    # With several listener processes too: refused before any of them is forked.
    for processes in (["--processes", "1"], ["--processes", "3"], []):
        for extra in ([], ["--tls-cert", str(cert), "--tls-key", str(key)]):
            with pytest.raises(SystemExit, match="needs mutual TLS"):
                call_command(
                    "intake", "mllp", "--host", host, "--sender", "lab", *processes, *extra
                )


def test_it_refuses_fewer_than_one_listener_process() -> None:
    with pytest.raises(SystemExit, match="--processes must be at least 1"):
        call_command("intake", "mllp", "--sender", "lab", "--processes", "0")


def test_plain_mllp_on_loopback_needs_a_configured_sender(db: None) -> None:
    with pytest.raises(SystemExit, match="--sender NAME"):
        call_command("intake", "mllp", "--host", "127.0.0.1")
    with pytest.raises(SystemExit, match="no active loopback MLLP sender named 'engine'"):
        call_command("intake", "mllp", "--host", "127.0.0.1", "--port", "0", "--sender", "engine")


def test_the_mllpsender_command_adds_lists_and_revokes(pki: dict[str, Any], db: None) -> None:
    lab = issue_client(pki["ca"], pki["folder"], "biomed-interface")
    out = StringIO()
    call_command(
        "mllpsender", "add", "Biomed", "--source", "BIOMED", "--cert", str(lab[0]), stdout=out
    )
    sender = MllpSender.objects.get(name="Biomed")
    assert sender.fingerprint in out.getvalue()
    assert sender.subject == "CN=biomed-interface"
    with pytest.raises(Exception, match="already belongs to the sender 'Biomed'"):
        call_command("mllpsender", "add", "Other", "--source", "X", "--cert", str(lab[0]))
    call_command("mllpsender", "add", "Engine", "--source", "HIS", "--loopback", stdout=out)
    listing = StringIO()
    call_command("mllpsender", "list", stdout=listing)
    assert "Engine\tHIS\tloopback" in listing.getvalue()
    call_command("mllpsender", "revoke", "Biomed", stdout=out)
    sender.refresh_from_db()
    assert not sender.is_active
    assert AuditEvent.objects.filter(action="intake.mllp_sender.revoked").exists()


def test_the_server_itself_refuses_a_listener_beyond_loopback_without_mutual_tls() -> None:
    with pytest.raises(ValueError, match="needs mutual TLS"):
        MllpServer(Settings(host="0.0.0.0", sender="lab"))


def test_the_default_is_one_listener_on_sqlite_and_one_per_core_on_postgresql() -> None:
    from django.db import connection

    from vigie.intake.hl7.processes import default_processes

    cores = max(1, os.cpu_count() or 1)
    assert default_processes() == (1 if connection.vendor == "sqlite" else cores)


def test_several_listeners_on_a_port_taken_say_so(audit_committing: None) -> None:
    from vigie.intake.models import MllpSender

    MllpSender.objects.create(name="engine", source_system="HIS")
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody may share its port
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command(
                "intake", "mllp", "--port", str(port), "--sender", "engine", "--processes", "2"
            )
