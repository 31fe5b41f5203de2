from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.test import Client

from vigie.accounts import sessions
from vigie.accounts.models import User
from vigie.accounts.testing import PASSWORD, fresh_code, log_in, totp_device
from vigie.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

COOKIE = settings.SESSION_COOKIE_NAME


def _session_id(client: Client) -> str:
    return client.cookies[COOKIE].value


def _with_cookie(session_id: str) -> Client:
    other = Client()
    other.cookies[COOKIE] = session_id
    return other


def _is_logged_in(client: Client) -> bool:
    # The login page sends a fully logged-in visitor home, anyone else sees the form.
    return client.get("/accounts/login/").status_code == 302


def _full_login(client: Client, user: User) -> None:
    client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(user))})


def test_it_gives_a_new_session_id_at_each_login_step(client: Client, doctor: User) -> None:
    client.get("/accounts/login/")
    client.session.save()  # an anonymous session, as a fixation attacker would plant
    before = client.session.session_key
    assert before is not None
    client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    after_password = _session_id(client)
    client.post("/accounts/verify/", {"code": fresh_code(totp_device(doctor))})
    after_code = _session_id(client)
    assert len({before, after_password, after_code}) == 3
    # Neither earlier cookie carries the new rights.
    assert not _is_logged_in(_with_cookie(before))
    half = _with_cookie(after_password)
    assert half.get("/accounts/recovery-codes/").status_code == 302
    assert _is_logged_in(client)


def test_old_session_cookie_is_refused_after_logout(client: Client, doctor: User) -> None:
    _full_login(client, doctor)
    stolen = _session_id(client)
    assert _is_logged_in(_with_cookie(stolen))
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    replay = _with_cookie(stolen).get("/accounts/recovery-codes/")
    assert replay.status_code == 302
    assert replay["Location"].startswith("/accounts/login/")
    assert AuditEvent.objects.filter(action="logout").count() == 1


def test_old_session_cookie_is_refused_after_a_new_login(client: Client, doctor: User) -> None:
    _full_login(client, doctor)
    old = _session_id(client)
    client.post("/accounts/logout/")
    _full_login(client, doctor)
    assert _session_id(client) != old
    assert not _is_logged_in(_with_cookie(old))
    assert _is_logged_in(client)


def test_logout_needs_a_post(client: Client, doctor: User) -> None:
    # A GET (an <img src> on another site) must not log anyone out, nor do anything else.
    log_in(client, doctor)
    assert client.get("/accounts/logout/").status_code == 405
    assert _is_logged_in(client)


def test_it_ends_an_idle_session(
    client: Client, doctor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_in(client, doctor)
    stolen = _session_id(client)
    start = time.time()
    monkeypatch.setattr(sessions, "now", lambda: start + 14 * 60)
    assert _is_logged_in(client)
    # 14 + 14 minutes: each step under the idle limit, so the session lives on.
    monkeypatch.setattr(sessions, "now", lambda: start + 28 * 60)
    assert _is_logged_in(client)
    monkeypatch.setattr(sessions, "now", lambda: start + 44 * 60)
    response = client.get("/accounts/recovery-codes/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    # Flushed server-side: the cookie is dead everywhere, not just in this browser.
    assert not _is_logged_in(_with_cookie(stolen))
    expired = AuditEvent.objects.get(action="session.expired")
    assert expired.reason == "idle"


def test_it_ends_a_session_after_twelve_hours_even_if_active(
    client: Client, doctor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_in(client, doctor)
    start = time.time()
    minutes = 0
    while minutes < 12 * 60 - 14:
        minutes += 14
        monkeypatch.setattr(sessions, "now", lambda m=minutes: start + m * 60)
        assert _is_logged_in(client), minutes
    monkeypatch.setattr(sessions, "now", lambda: start + (12 * 60 + 1) * 60)
    assert not _is_logged_in(client)
    assert AuditEvent.objects.get(action="session.expired").reason == "absolute"


def test_it_ends_a_half_logged_in_session_when_idle(
    client: Client, doctor: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.post("/accounts/login/", {"username": "dr.house", "password": PASSWORD})
    start = time.time()
    monkeypatch.setattr(sessions, "now", lambda: start + 16 * 60)
    response = client.get("/accounts/verify/")
    assert response["Location"].startswith("/accounts/login/")


def test_a_session_not_made_by_the_login_pages_is_refused(client: Client, doctor: User) -> None:
    # force_login() stands for any way of creating a session other than our two steps.
    client.force_login(doctor)
    assert client.get("/accounts/verify/")["Location"].startswith("/accounts/login/")


def test_the_session_cookie_dies_with_the_browser() -> None:
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.SESSION_COOKIE_SAMESITE == "Strict"
