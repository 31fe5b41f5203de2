"""/guard/: what the guard saw, for IT administrators; lockdown cleared only with a fresh
second factor; guard alerts acknowledged from the page."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.accounts.otp import SECOND_FACTOR_AT
from vigie.accounts.testing import fresh_code, log_in, make_user, totp_device
from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.guard import lockdown
from vigie.guard.models import DriftEvent, GuardState, MaintenanceWindow, ProbeResult

pytestmark = pytest.mark.django_db

REAUTH = "/accounts/reauth/?next=%2Fguard%2F"


@pytest.fixture(autouse=True)
def _http(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = False


def _client(role: Role, name: str | None = None) -> tuple[Client, User]:
    user = make_user(name or f"user-{role}", role=role)
    client = Client()
    log_in(client, user)
    return client, user


def _make_stale(client: Client) -> None:
    # The session of someone who logged in properly an hour ago: what a stolen cookie gives.
    session = client.session
    session[SECOND_FACTOR_AT] = time.time() - 3600
    session.save()


def _guard_alert(kind: str = "guard.drift", summary: str = "nft ruleset: accept all") -> Alert:
    return Alert.objects.create(
        kind=kind, severity="critical", summary=summary, dedupe_key=kind, audience="admin"
    )


def _is_locked() -> bool:
    return GuardState.objects.get(pk=GuardState.SINGLETON).lockdown


# --- the page --------------------------------------------------------------------------------


def test_it_lists_windows_drift_probe_results_and_alerts() -> None:
    now = timezone.now()
    MaintenanceWindow.objects.create(
        who="ACME contractor", reason="PACS upgrade", source="198.51.100.23", port=443,
        ends_at=now + timedelta(minutes=30), extensions=2, extended_by="it.oncall",
    )  # fmt: skip
    MaintenanceWindow.objects.create(
        who="Old Job", reason="printer driver", source="198.51.100.99", port=22,
        opened_at=now - timedelta(days=1), ends_at=now - timedelta(hours=20),
        closed_at=now - timedelta(hours=20), close_reason="expired", verified_closed=True,
    )  # fmt: skip
    DriftEvent.objects.create(kind="ruleset", summary="chain input: policy changed to accept")
    ProbeResult.objects.create(
        round_id="r-old", url="/documents/old", category="document", status=200,
        verdict="leak", checked_at=now - timedelta(minutes=5),
    )  # fmt: skip
    ProbeResult.objects.create(
        round_id="r-new", url="/documents/decoy-123", category="decoy", status=302, verdict="ok"
    )
    _guard_alert()
    Alert.objects.create(
        kind="canary.touched", severity="critical", summary="DPO business",
        dedupe_key="c", audience="auditor",
    )  # fmt: skip

    client, _ = _client(Role.ADMIN)
    response = client.get("/guard/")
    assert response.status_code == 200
    page = response.content.decode()
    for expected in (
        "ACME contractor", "PACS upgrade", "198.51.100.23", "extended 2 times by it.oncall",
        "Old Job", "198.51.100.99",
        "chain input: policy changed to accept",
        "/documents/decoy-123", "r-new",
        "nft ruleset: accept all",
    ):  # fmt: skip
        assert expected in page, expected
    # Only the latest round's results are listed in full; older rounds are counted.
    assert "/documents/old" not in page
    assert response.context["probe_history"][1].leaks == 1
    assert "DPO business" not in page


def test_doctor_cannot_reach_guard_page() -> None:
    alert = _guard_alert()
    lockdown.engage("exposure")
    for role in (Role.DOCTOR, Role.AUDITOR):
        client, _ = _client(role)
        assert client.get("/guard/").status_code == 404
        assert client.post("/guard/lockdown/clear").status_code == 404
        assert client.post(f"/guard/alerts/{alert.pk}/acknowledge").status_code == 404
    assert _is_locked()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_only_admins_get_the_nav_link() -> None:
    admin, _ = _client(Role.ADMIN)
    doctor, _ = _client(Role.DOCTOR)
    assert 'href="/guard/"' in admin.get("/").content.decode()
    assert 'href="/guard/"' not in doctor.get("/").content.decode()


# --- clearing lockdown -----------------------------------------------------------------------


def test_lockdown_cannot_be_cleared_with_a_stolen_stale_session() -> None:
    lockdown.engage("a PDF was fetched from outside")
    client, _ = _client(Role.ADMIN)
    _make_stale(client)

    response = client.post("/guard/lockdown/clear")

    assert response.status_code == 302
    assert response["Location"] == REAUTH
    assert _is_locked()
    assert not AuditEvent.objects.filter(action="guard.lockdown.cleared").exists()


def test_a_stale_admin_goes_through_reauth_and_back_then_clears() -> None:
    lockdown.engage("a PDF was fetched from outside")
    client, admin = _client(Role.ADMIN)
    _make_stale(client)

    reauth = client.post("/guard/lockdown/clear")
    back = client.post(reauth["Location"], {"code": fresh_code(totp_device(admin))})
    assert back.status_code == 302
    assert back["Location"] == "/guard/"
    assert _is_locked(), "re-authenticating alone must not clear anything"

    assert client.post("/guard/lockdown/clear").status_code == 302
    assert not _is_locked()


def test_a_fresh_admin_clears_lockdown_and_it_is_audited() -> None:
    lockdown.engage("a PDF was fetched from outside")
    client, _ = _client(Role.ADMIN, "it.oncall")

    response = client.post("/guard/lockdown/clear", follow=True)

    assert response.redirect_chain == [("/guard/", 302)]
    assert "Lockdown cleared" in response.content.decode()
    state = GuardState.objects.get(pk=GuardState.SINGLETON)
    assert not state.lockdown
    assert state.lockdown_cleared_by == "it.oncall"
    event = AuditEvent.objects.get(action="guard.lockdown.cleared")
    assert event.actor_username == "it.oncall"


def test_clearing_needs_a_post() -> None:
    lockdown.engage("exposure")
    client, _ = _client(Role.ADMIN)
    assert client.get("/guard/lockdown/clear").status_code == 405
    assert _is_locked()


# --- acknowledging ---------------------------------------------------------------------------


def test_an_admin_acknowledges_a_guard_alert_from_the_page() -> None:
    alert = _guard_alert("maintenance.not_closed", "port 443 still open after the window")
    client, _ = _client(Role.ADMIN, "it.oncall")

    response = client.post(f"/guard/alerts/{alert.pk}/acknowledge")

    assert response.status_code == 302
    assert response["Location"] == "/guard/"
    alert.refresh_from_db()
    assert alert.acknowledged_by == "it.oncall"
    assert AuditEvent.objects.get(action="alert.acknowledge").actor_username == "it.oncall"
    assert "port 443 still open" not in client.get("/guard/").content.decode()


def test_the_guard_page_cannot_acknowledge_the_dpos_alerts() -> None:
    alert = Alert.objects.create(
        kind="canary.touched", severity="critical", summary="decoy", dedupe_key="c",
        audience="auditor",
    )  # fmt: skip
    client, _ = _client(Role.ADMIN)
    assert client.post(f"/guard/alerts/{alert.pk}/acknowledge").status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_a_cross_site_form_cannot_acknowledge_or_clear() -> None:
    alert = _guard_alert()
    lockdown.engage("exposure")
    client = Client(enforce_csrf_checks=True)
    log_in(client, make_user("it", role=Role.ADMIN))
    assert client.post(f"/guard/alerts/{alert.pk}/acknowledge").status_code == 403
    assert client.post("/guard/lockdown/clear").status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert _is_locked()


def test_attack_a_dead_guard_on_one_host_shows_while_another_host_beats() -> None:
    """Each node has its own firewall and its own guard: the latest beat of any of them must
    not hide that one host's guard went silent (its firewall is no longer watched)."""
    from vigie.guard.heartbeat import beat
    from vigie.guard.models import GuardHost

    GuardHost.objects.create(
        host="node-b", pid=77, last_heartbeat=timezone.now() - timedelta(hours=1)
    )
    beat()  # this host's guard is alive
    DriftEvent.objects.create(kind="ruleset", summary="chain input: policy changed to accept")
    assert DriftEvent.objects.get().host == socket.gethostname()

    client, _ = _client(Role.ADMIN)
    response = client.get("/guard/")
    rows = {row.host: row for row in response.context["hosts"]}
    assert set(rows) == {"node-b", socket.gethostname()}
    assert rows["node-b"].silent is True
    assert rows[socket.gethostname()].silent is False
    assert rows[socket.gethostname()].pid == os.getpid()
    page = response.content.decode()
    assert "node-b" in page
    assert "silent" in page
