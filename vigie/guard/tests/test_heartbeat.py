"""The dead man's switch: the guard's beat, its webhook, and the banner admins see when it stops."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone, translation

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.alerts.models import Alert
from vigie.audit.log import record
from vigie.audit.models import AuditEvent
from vigie.guard import lockdown
from vigie.guard.context import guard_status
from vigie.guard.heartbeat import beat, guard_is_silent, record_silence, silence_seconds
from vigie.guard.models import GuardState, MaintenanceWindow

pytestmark = pytest.mark.django_db

SILENT_BANNER = "The exposure guard has been silent for"


@pytest.fixture(autouse=True)
def _http(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = False
    settings.VIGIE_GUARD_SILENCE_SECONDS = 120


class _Monitor(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(
            {
                "content_type": self.headers["Content-Type"],
                "body": json.loads(self.rfile.read(length)),
            }
        )
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(status: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    class Monitor(_Monitor):
        pass

    # A class per server: each test sees only what its own monitor received.
    Monitor.received = []
    Monitor.status = status
    handler = Monitor
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ping", handler.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def monitor() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _serve(200)


@pytest.fixture
def broken_monitor() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from _serve(500)


def _state() -> GuardState:
    return GuardState.objects.get(pk=GuardState.SINGLETON)


def _silent_for(seconds: float) -> None:
    state = GuardState.get()
    state.last_heartbeat = timezone.now() - timedelta(seconds=seconds)
    state.save()


# --- beat ------------------------------------------------------------------------------------


def test_it_records_the_beat_without_a_url() -> None:
    before = timezone.now()
    beat()
    state = _state()
    assert state.last_heartbeat is not None
    assert state.last_heartbeat >= before
    assert state.guard_pid == os.getpid()
    assert state.guard_host == socket.gethostname()


def test_a_beat_that_meets_a_briefly_locked_table_is_still_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite says "database table is locked" at once, without waiting; a beat lost to it
    # would read as a guard that stopped.
    from django.db import OperationalError

    from vigie.guard import heartbeat

    real = heartbeat._write_beat
    failures = [OperationalError("database table is locked")] * 2

    def flaky(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        real(*args, **kwargs)

    monkeypatch.setattr(heartbeat, "_write_beat", flaky)
    beat()
    assert not failures
    assert GuardState.get().last_heartbeat is not None


def test_it_posts_the_status_to_the_monitor(monitor: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = monitor
    now = timezone.now()
    MaintenanceWindow.objects.create(
        who="contractor",
        reason="update",
        source="192.0.2.7",
        port=443,
        ends_at=now + timedelta(hours=1),
    )
    MaintenanceWindow.objects.create(
        who="old", reason="done", source="192.0.2.8", port=443,
        opened_at=now - timedelta(hours=2), ends_at=now - timedelta(hours=1), closed_at=now,
    )  # fmt: skip
    lockdown.engage("a document was served to the outside")  # raises a guard.lockdown alert
    Alert.objects.create(
        kind="canary.touched", severity="critical", summary="not the guard's", dedupe_key="c"
    )

    beat(url, timeout=5)

    assert len(received) == 1
    assert received[0]["content_type"] == "application/json"
    body = received[0]["body"]
    assert body["status"] == "alive"
    assert body["host"] == socket.gethostname()
    assert body["pid"] == os.getpid()
    assert body["lockdown"] is True
    assert body["open_windows"] == 1
    assert body["open_alerts"] == 1
    assert abs((datetime.fromisoformat(body["time"]) - now).total_seconds()) < 60
    assert _state().lockdown, "the beat must not undo a lockdown"


def test_a_failing_monitor_does_not_stop_the_guard(
    broken_monitor: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    url, received = broken_monitor
    with caplog.at_level(logging.WARNING, logger="vigie.guard.heartbeat"):
        beat(url, timeout=5)
    assert len(received) == 1
    assert "delivery" in caplog.text
    assert _state().last_heartbeat is not None  # the portal still knows the guard is alive


def test_an_unreachable_monitor_does_not_stop_the_guard() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nobody listens on that port any more: the connection is refused.
    beat(f"http://127.0.0.1:{port}/ping", timeout=1)
    beat("ftp://127.0.0.1/ping")
    assert _state().last_heartbeat is not None


# --- silence ---------------------------------------------------------------------------------


def test_a_guard_that_never_beat_is_silent() -> None:
    assert silence_seconds() is None
    assert guard_is_silent()


def test_silence_is_measured_from_the_last_beat() -> None:
    beat()
    last = _state().last_heartbeat
    assert last is not None
    assert silence_seconds(last + timedelta(seconds=90)) == pytest.approx(90)
    assert not guard_is_silent(last + timedelta(seconds=119))
    assert guard_is_silent(last + timedelta(seconds=121))


# --- banner ----------------------------------------------------------------------------------


def _home(role: Role, path: str = "/") -> str:
    client = Client()
    log_in(client, make_user(f"user-{role}", role=role))
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


def test_dead_guard_is_shown_to_admins() -> None:
    _silent_for(200)
    page = _home(Role.ADMIN)
    assert SILENT_BANNER in page
    assert "3 minutes" in page
    assert 'href="/guard/"' in page

    assert SILENT_BANNER not in _home(Role.DOCTOR)
    assert SILENT_BANNER not in _home(Role.AUDITOR)


def test_a_fresh_beat_shows_no_banner() -> None:
    _silent_for(30)
    assert SILENT_BANNER not in _home(Role.ADMIN)


def test_a_guard_that_never_beat_is_shown_to_admins() -> None:
    assert "The exposure guard has never reported" in _home(Role.ADMIN)


def test_lockdown_is_shown_to_admins() -> None:
    _silent_for(10)
    lockdown.engage("probe fetched a PDF from outside")
    # The records pages answer with the maintenance page now; the alerts page still works.
    page = _home(Role.ADMIN, "/alerts/")
    assert "Lockdown" in page
    assert "probe fetched a PDF from outside" in page


def test_doctors_pages_do_not_query_the_guard_state(
    django_assert_num_queries: Any,
) -> None:
    request = RequestFactory().get("/")
    request.user = make_user("dr.who", role=Role.DOCTOR)
    with django_assert_num_queries(0):
        assert guard_status(request) == {}


def test_admins_get_the_status_in_one_query(django_assert_num_queries: Any) -> None:
    _silent_for(600)
    request = RequestFactory().get("/")
    request.user = make_user("it", role=Role.ADMIN)
    with django_assert_num_queries(1):
        status = guard_status(request)
    assert status["guard_silent"] is True
    assert status["guard_silent_minutes"] == 10
    assert status["guard_lockdown"] is False


def test_clock_skew_is_not_negative_silence() -> None:
    # A beat "from the future" (clock skew between guard and portal) is not negative silence.
    state = GuardState.get()
    state.last_heartbeat = timezone.now() + timedelta(seconds=5)
    state.save()
    assert silence_seconds() == 0.0
    assert not guard_is_silent()


# --- the silence, recorded by the next guard ---------------------------------------------------


def _silence_alert() -> Alert:
    return Alert.objects.get(kind="guard.silence")


def _local(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def test_a_guard_that_never_ran_leaves_no_silence_to_record() -> None:
    assert record_silence() is None
    assert not Alert.objects.filter(kind="guard.silence").exists()


def test_attack_killing_the_guard_is_recorded_when_it_restarts() -> None:
    # SIGKILL leaves no stop record: the gap runs from the last beat to the next start.
    record("guard.started", extra={"pid": 1})
    beat()
    last = _state().last_heartbeat
    assert last is not None
    restarted = last + timedelta(minutes=7, seconds=3)

    alert = record_silence(restarted)

    assert alert is not None
    assert alert == _silence_alert()
    assert alert.severity == "critical"
    assert f"was not running from {_local(last)}" in alert.summary
    assert f"to {_local(restarted)}" in alert.summary
    assert "(7m3s)" in alert.summary
    assert "killed" in alert.summary
    assert alert.details["stopped_cleanly"] is False
    audit = AuditEvent.objects.get(action="guard.silence")
    assert audit.extra["seconds"] == 423


def test_a_stopped_guard_leaves_a_gap_from_its_stop() -> None:
    record("guard.started", extra={"pid": 1})
    beat()
    stop = record("guard.stopped", extra={"pid": 1})

    alert = record_silence(stop.at + timedelta(seconds=90))

    assert alert is not None
    assert alert.severity == "warning"
    assert f"was not running from {_local(stop.at)}" in alert.summary
    assert "had been stopped" in alert.summary
    assert alert.details["stopped_cleanly"] is True


def test_the_silence_is_said_in_french() -> None:
    record("guard.started", extra={"pid": 1})
    beat()
    last = _state().last_heartbeat
    assert last is not None

    with translation.override("fr"):
        alert = record_silence(last + timedelta(minutes=2))

    assert alert is not None
    assert alert.summary.startswith(
        f"La surveillance de l'exposition ne tournait pas du {_local(last)}"
    )


def test_attack_killing_one_hosts_guard_is_recorded_though_another_host_beats() -> None:
    """On a group each host's firewall has its own guard: node-b beating all along must not
    hide that this host's guard was killed (nobody watched this host's firewall)."""
    from vigie.guard.models import GuardHost, this_host

    record("guard.started", extra={"host": this_host(), "pid": 1})
    beat()  # this host's last sign of life...
    last = GuardHost.objects.get(host=this_host()).last_heartbeat
    restarted = last + timedelta(minutes=30)
    # ...then only node-b: its guard starts, beats, until just before this one restarts.
    record("guard.started", extra={"host": "node-b", "pid": 2})
    GuardHost.objects.create(host="node-b", pid=2, last_heartbeat=restarted)
    GuardState.objects.update(last_heartbeat=restarted, guard_host="node-b", guard_pid=2)

    alert = record_silence(restarted)

    assert alert is not None
    assert alert.severity == "critical"
    assert f"was not running from {_local(last)}" in alert.summary
    assert "30m" in alert.summary
    assert alert.details["host"] == this_host()
