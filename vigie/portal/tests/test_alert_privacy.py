"""Alerts leave the building (e-mail, webhook, syslog): they name no patient, by IPP or name,
and carry the patient's opaque public id instead."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from vigie.alerts import services
from vigie.alerts.models import Alert
from vigie.portal import door, emergency
from vigie.records.content import VaultError
from vigie.records.models import EmergencyAccess
from vigie.records.testing import make_doctor, make_document, make_patient

pytestmark = pytest.mark.django_db


class _Hook(BaseHTTPRequestHandler):
    received: list[bytes] = []  # noqa: RUF012 - shared with the test on purpose

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def channels(settings) -> Iterator[tuple[list[bytes], socket.socket]]:
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(5)
    settings.VIGIE_ALERT_EMAILS = ["dpo@clinique.example"]
    settings.VIGIE_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{hook.server_port}/hook"
    settings.VIGIE_ALERT_SYSLOG = f"127.0.0.1:{syslog.getsockname()[1]}"
    settings.VIGIE_ALERT_RATE_PER_MINUTE = 100
    services._deliverer().limiter.sent.clear()
    yield _Hook.received, syslog
    services.wait_for_deliveries()
    hook.shutdown()
    syslog.close()


def test_attack_reading_the_mailbox_webhook_or_syslog_learns_no_patient_identity(
    channels, django_capture_on_commit_callbacks
) -> None:
    hook, syslog = channels
    patient = make_patient("CONFIDENTIEL")
    document = make_document(patient)
    doctor = make_doctor("dr.night")
    now = timezone.now()
    grant = EmergencyAccess.objects.create(
        doctor=doctor,
        patient=patient,
        reason="vital_emergency",
        justification="Unconscious, no relative reachable.",
        granted_at=now,
        expires_at=now + timedelta(hours=4),
    )
    with django_capture_on_commit_callbacks(execute=True):
        emergency._alert_auditor(grant)  # emergency access
        door._alert_unreadable(document, VaultError("bad tag"), mid_stream=False)  # unreadable
        # The audit rules' decoy alert: its details carry the event's patient_ipp.
        services.raise_alert(
            "canary.touched",
            severity="critical",
            summary="Decoy record opened by dr.night",
            details={"action": "document.view", "patient_ipp": patient.ipp, "actor": "dr.night"},
        )
    services.wait_for_deliveries()

    lines = [syslog.recv(65536).decode() for _ in range(3)]
    deliveries = {
        "e-mail": [m.subject + "\n" + m.body for m in mail.outbox],
        "webhook": [body.decode() for body in hook],
        "syslog": lines,
    }
    for channel, texts in deliveries.items():
        assert len(texts) == 3, channel
        for text in texts:
            for secret in (patient.ipp, patient.family_name, patient.given_names):
                assert secret not in text, (channel, secret, text)
            assert patient.public_id in text, (channel, text)
    sent = json.loads(hook[0])
    assert sent["details"]["patient_ref"] == patient.public_id
    # Inside Vigie, the stored alerts keep the IPP for the authorised /alerts pages.
    assert Alert.objects.get(kind="vault.integrity").details["patient_ipp"] == patient.ipp
