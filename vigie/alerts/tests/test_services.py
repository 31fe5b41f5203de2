from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.db import OperationalError

from vigie.accounts.models import Role, User
from vigie.alerts import services
from vigie.alerts.models import Alert
from vigie.alerts.services import acknowledge, wait_for_deliveries
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _channels(settings) -> Iterator[None]:
    settings.VIGIE_ALERT_EMAILS = ["dpo@clinique.example"]
    settings.VIGIE_ALERT_WEBHOOK_URL = None
    settings.VIGIE_ALERT_SYSLOG = None
    services._deliverer().limiter.sent.clear()
    yield
    wait_for_deliveries()


@pytest.fixture(autouse=True)
def _commit_now(monkeypatch, django_capture_on_commit_callbacks) -> None:
    """The test runs in a transaction that never commits: deliver as if it had."""
    real = services.raise_alert

    def raise_and_commit(*args: object, **kwargs: object) -> Alert:
        with django_capture_on_commit_callbacks(execute=True):
            return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "raise_alert", raise_and_commit)


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []  # noqa: RUF012 - shared with the test on purpose

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook(settings) -> Iterator[list[dict[str, object]]]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.VIGIE_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    yield _Hook.received
    server.shutdown()


def test_it_stores_and_emails_an_alert() -> None:
    alert = services.raise_alert("canary.touched", severity="critical", summary="Decoy file opened")
    wait_for_deliveries()
    assert Alert.objects.get().pk == alert.pk
    assert alert.audience == "auditor"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["dpo@clinique.example"]
    assert "Decoy file opened" in mail.outbox[0].subject


def test_it_counts_repeats_of_an_open_alert_instead_of_piling_up() -> None:
    for _ in range(12):
        services.raise_alert(
            "guard.drift", severity="warning", summary="Port 443 open", dedupe_key="drift:443"
        )
    wait_for_deliveries()
    alert = Alert.objects.get()
    assert alert.count == 12
    assert alert.audience == "admin"
    # Delivered at the first and the tenth occurrence only.
    assert len(mail.outbox) == 2


def test_acknowledging_closes_the_alert_and_is_audited() -> None:
    dpo = User.objects.create_user(username="dpo", role=Role.AUDITOR)
    alert = services.raise_alert("emergency.access", severity="warning", summary="Break-the-glass")
    acknowledged = acknowledge(alert, dpo)
    assert acknowledged.acknowledged_by == "dpo"
    event = AuditEvent.objects.get(action="alert.acknowledge")
    assert event.actor_username == "dpo"
    assert event.extra["alert_id"] == alert.pk
    # The same problem again opens a new alert.
    again = services.raise_alert("emergency.access", severity="warning", summary="Break-the-glass")
    assert again.pk != alert.pk


def test_it_posts_json_to_the_webhook(webhook: list[dict[str, object]]) -> None:
    services.raise_alert(
        "vault.integrity", severity="critical", summary="Blob unreadable", details={"n": 1}
    )
    wait_for_deliveries()
    assert webhook[0]["kind"] == "vault.integrity"
    assert webhook[0]["details"] == {"n": 1}


def test_an_unreachable_webhook_neither_blocks_nor_fails_the_caller(settings) -> None:
    settings.VIGIE_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    started = time.monotonic()
    services.raise_alert("guard.probe", severity="critical", summary="Reachable from outside")
    assert time.monotonic() - started < 1.0
    wait_for_deliveries()
    assert len(mail.outbox) == 1  # the other channels still delivered


def test_a_flood_of_alerts_is_rate_limited_per_channel(settings) -> None:
    settings.VIGIE_ALERT_RATE_PER_MINUTE = 3
    for n in range(10):
        services.raise_alert("guard.scan", severity="warning", summary=f"Scan {n}")
    wait_for_deliveries()
    assert Alert.objects.count() == 10
    assert len(mail.outbox) == 3


def test_it_still_delivers_when_the_database_is_down(monkeypatch) -> None:
    def down(alert: Alert) -> Alert:
        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "_store", down)
    services.raise_alert("audit.unavailable", severity="critical", summary="Audit log down")
    wait_for_deliveries()
    assert not Alert.objects.exists()
    assert len(mail.outbox) == 1


def test_it_refuses_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="severity"):
        services.raise_alert("x", severity="apocalyptic", summary="?")
