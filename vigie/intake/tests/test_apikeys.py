"""API keys for systems, created and revoked in the admin and with `vigie apikey`."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client

from vigie.accounts.models import Role
from vigie.accounts.testing import log_in, make_user
from vigie.audit.models import AuditEvent
from vigie.intake.models import ApiKey
from vigie.intake.rest.testing import metadata, new_key, pdf, send
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"vk_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")
ADD_URL = "/admin/intake/apikey/add/"
LIST_URL = "/admin/intake/apikey/"


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def it_admin() -> Client:
    client = Client()
    log_in(client, make_user("it.admin", role=Role.ADMIN))
    return client


def _create_in_admin(client: Client, **fields: str) -> Any:
    data = {"name": "labo-bio", "source_system": "LABO-BIO", "networks": "", **fields}
    return client.post(ADD_URL, data)


def _stored_everywhere_text(text: str) -> list[str]:
    return list(KEY_RE.findall(text))


def _stored_everywhere(secret: str) -> list[str]:
    """Where the full key text would be found at rest: the database (any table's text)."""
    found = []
    for session in Session.objects.all():
        if secret in str(session.get_decoded()):
            found.append("session")
    for key in ApiKey.objects.all():
        if secret in " ".join(str(getattr(key, f.attname)) for f in ApiKey._meta.fields):
            found.append("api key row")
    for event in AuditEvent.objects.all():
        if secret in f"{event.extra} {event.reason}":
            found.append("audit")
    return found


# --- admin ----------------------------------------------------------------------------


def test_the_admin_shows_a_new_key_once_and_keeps_only_its_hash(it_admin: Client) -> None:
    posted = _create_in_admin(it_admin, networks="10.20.0.0/16\n192.0.2.7")
    # POST/redirect/GET: the form's answer is a redirect, so a reload cannot post it again.
    assert posted.status_code == 302, posted.content
    assert KEY_RE.search(posted.content.decode()) is None
    # Between the two, the session holds the key sealed only.
    key_row = ApiKey.objects.get(name="labo-bio")
    response = it_admin.get(posted["Location"])
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    assert f'href="{LIST_URL}"' in response.content.decode()
    assert "readonly" in response.content.decode()
    assert key_row.pk
    shown = KEY_RE.findall(response.content.decode())
    assert len(set(shown)) == 1
    text = shown[0]
    key = ApiKey.objects.get(name="labo-bio")
    assert key.allowed_networks == ["10.20.0.0/16", "192.0.2.7/32"]
    assert key.created_by == "it.admin"
    secret = text.split("_", 2)[2]
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    # Never kept: not in the message cookie, the session, the row or the audit trail...
    assert "messages" not in response.cookies
    assert _stored_everywhere(text) == []
    # ...and never shown again.
    for url in (posted["Location"], LIST_URL, f"{LIST_URL}{key.pk}/change/"):
        page = it_admin.get(url)
        assert page.status_code == 200
        assert secret not in page.content.decode()
        assert key.secret_hash not in page.content.decode()
    assert AuditEvent.objects.filter(action="intake.apikey.created").count() == 1


def test_the_key_created_in_the_admin_works(it_admin: Client, client: Client) -> None:
    shown = it_admin.get(_create_in_admin(it_admin)["Location"])
    text = KEY_RE.findall(shown.content.decode())[0]
    patient = make_patient()
    response = send(client, text, content=pdf(), meta=metadata(ins=patient.ins))
    assert response.status_code == 202


def test_the_admin_refuses_a_bad_network_and_a_duplicate_name(it_admin: Client) -> None:
    response = _create_in_admin(it_admin, networks="10.20.0.0/16\nlabo.example")
    assert response.status_code == 200
    assert "labo.example" in response.content.decode()
    assert not ApiKey.objects.exists()
    new_key("labo-bio")
    response = _create_in_admin(it_admin)
    assert response.status_code == 200
    assert ApiKey.objects.count() == 1
    assert not KEY_RE.search(response.content.decode())


def test_the_sealed_key_waiting_in_the_session_is_not_the_key(it_admin: Client) -> None:
    posted = _create_in_admin(it_admin)
    session = it_admin.session
    waiting = session["vigie_api_key_once"]
    # Whoever reads the session table (a dump, a backup) finds ciphertext, not the key.
    assert _stored_everywhere_text(str(waiting)) == []
    shown = KEY_RE.findall(it_admin.get(posted["Location"]).content.decode())
    assert len(set(shown)) == 1
    assert shown[0] not in str(waiting)
    assert "vigie_api_key_once" not in it_admin.session


def test_reloading_the_key_page_says_it_was_shown_once(it_admin: Client) -> None:
    posted = _create_in_admin(it_admin)
    first = it_admin.get(posted["Location"]).content.decode()
    again = it_admin.get(posted["Location"]).content.decode()
    assert len(KEY_RE.findall(first)) >= 1
    assert KEY_RE.findall(again) == []
    assert "already shown once" in again or "déjà été affichée" in again
    assert ApiKey.objects.count() == 1


def test_an_existing_key_cannot_be_edited_in_the_admin(it_admin: Client) -> None:
    key, _text = new_key("labo-bio", networks=["10.20.0.0/16"])
    it_admin.post(
        f"{LIST_URL}{key.pk}/change/",
        {"name": "renamed", "source_system": "OTHER", "allowed_networks": "[]"},
    )
    key.refresh_from_db()
    assert (key.name, key.source_system, key.allowed_networks) == (
        "labo-bio",
        "LABO-BIO",
        ["10.20.0.0/16"],
    )


def test_a_key_cannot_be_deleted_only_revoked(it_admin: Client) -> None:
    key, _text = new_key()
    response = it_admin.post(f"{LIST_URL}{key.pk}/delete/", {"post": "yes"})
    assert response.status_code in (302, 403)
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_the_admin_revokes_keys_and_the_revocation_is_audited(
    it_admin: Client, client: Client
) -> None:
    key, text = new_key()
    response = it_admin.post(LIST_URL, {"action": "revoke_keys", "_selected_action": [str(key.pk)]})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert key.revoked_by == "it.admin"
    event = AuditEvent.objects.get(action="intake.apikey.revoked")
    assert event.extra["key"] == "labo-bio"
    patient = make_patient()
    refused = send(client, text, content=pdf(), meta=metadata(ins=patient.ins))
    assert refused.status_code == 401


def test_a_doctor_cannot_reach_the_api_key_admin() -> None:
    client = Client()
    log_in(client, make_user("dr.curious", role=Role.DOCTOR))
    assert client.get(LIST_URL).status_code in (302, 403)
    assert _create_in_admin(client).status_code in (302, 403)
    assert not ApiKey.objects.exists()


# --- vigie apikey ---------------------------------------------------------------------


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("apikey", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_cli_prints_the_new_key_once_alone_on_stdout(client: Client) -> None:
    out, err = _run("create", "hopital-sih", "--source", "SIH", "--network", "10.0.0.0/8")
    text = out.strip()
    assert KEY_RE.fullmatch(text)
    assert text not in err
    assert "once" in err
    key = ApiKey.objects.get(name="hopital-sih")
    assert key.source_system == "SIH"
    assert key.allowed_networks == ["10.0.0.0/8"]
    assert key.created_by.startswith("cli")
    assert _stored_everywhere(text) == []
    patient = make_patient()
    response = send(
        client, text, content=pdf(), meta=metadata(ins=patient.ins), REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 202


def test_the_cli_lists_keys_without_their_secret() -> None:
    _key, text = new_key("labo-bio")
    out, _err = _run("list")
    assert "labo-bio" in out
    assert text.split("_", 2)[2] not in out


def test_the_cli_revokes_a_key_by_name() -> None:
    key, _text = new_key("labo-bio")
    out, _err = _run("revoke", "labo-bio")
    assert "labo-bio" in out
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="intake.apikey.revoked").count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ("revoke", "nobody"),
        ("create", "labo-bio", "--source", "X"),
        ("create", "other", "--source", "X", "--network", "not-a-network"),
        ("create", "other", "--source", " "),
    ],
)
def test_the_cli_explains_what_it_cannot_do(args: tuple[str, ...]) -> None:
    new_key("labo-bio")
    with pytest.raises(CommandError) as failure:
        _run(*args)
    assert failure.value.returncode == 2
    assert str(failure.value)
    assert ApiKey.objects.count() == 1


# --- keys that are not text we issue --------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_AUTHORIZATION": "Bearer vk_abc_dÃ©f"},
        {"HTTP_AUTHORIZATION": "Bearer vk_Ã©_secret"},
        {"HTTP_X_API_KEY": "vk_abc_\u2603"},
    ],
    ids=["secret", "prefix", "x-api-key"],
)
@pytest.mark.parametrize("channel", ["rest", "fhir"])
def test_attack_a_non_ascii_api_key_is_refused_401_and_audited(
    headers: dict[str, Any], channel: str
) -> None:
    # Headers reach WSGI as latin-1: a UTF-8 "é" arrives as "Ã©". Hashing such a secret once
    # raised UnicodeEncodeError, a 500 with no trace in the audit log.
    new_key()
    patient = make_patient()
    client = Client()
    if channel == "rest":
        response = send(client, None, content=pdf(), meta=metadata(ins=patient.ins), **headers)
    else:
        response = client.post(
            "/fhir/DocumentReference", "{}", content_type="application/fhir+json", **headers
        )
    assert response.status_code == 401
    refused = AuditEvent.objects.filter(action="intake.apikey.refused").get()
    assert refused.reason == "malformed"
    assert refused.outcome == "denied"
