from __future__ import annotations

import pytest
from django.test import Client

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _http(settings) -> None:
    settings.SECURE_SSL_REDIRECT = False


def _alert(audience: str) -> Alert:
    return Alert.objects.create(
        kind="guard.drift" if audience == "admin" else "canary.touched",
        severity="critical",
        summary=f"Something for {audience}",
        dedupe_key=f"k-{audience}",
        audience=audience,
    )


def _client(role: Role) -> Client:
    client = Client()
    log_in(client, make_user(f"user-{role}", role=role))
    return client


def test_each_role_sees_only_its_own_alerts() -> None:
    _alert("admin")
    _alert("auditor")
    page = _client(Role.AUDITOR).get("/alerts/").content.decode()
    assert "Something for auditor" in page
    assert "Something for admin" not in page


def test_doctors_get_404_on_alerts() -> None:
    alert = _alert("auditor")
    client = _client(Role.DOCTOR)
    assert client.get("/alerts/").status_code == 404
    assert client.post(f"/alerts/{alert.pk}/acknowledge").status_code == 404


def test_acknowledging_records_who_and_audits_it() -> None:
    alert = _alert("auditor")
    response = _client(Role.AUDITOR).post(f"/alerts/{alert.pk}/acknowledge")
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == "user-auditor"
    assert AuditEvent.objects.get(action="alert.acknowledge").actor_username == "user-auditor"


def test_an_auditor_cannot_acknowledge_an_it_alert() -> None:
    alert = _alert("admin")
    assert _client(Role.AUDITOR).post(f"/alerts/{alert.pk}/acknowledge").status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
