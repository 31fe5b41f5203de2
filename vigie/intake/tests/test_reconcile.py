"""/intake/reconcile/: IT administrators attach or reject what intake could not match exactly.

Personas: an IT administrator (`it.admin`), a doctor and the data protection officer (both
outsiders here: 404). The page shows metadata only; attaching needs a fresh second factor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import include, path
from django.utils import translation
from django.utils.formats import date_format

from vigie.accounts.models import Role, User
from vigie.accounts.otp import SECOND_FACTOR_AT
from vigie.accounts.testing import fresh_code, log_in, make_user, totp_device
from vigie.audit.models import AuditEvent
from vigie.records.ingest import DocumentMeta
from vigie.records.models import Document, Patient, PatientIdentifier, PendingDocument
from vigie.records.models import PendingStatus as Status
from vigie.records.receive import Sender, receive
from vigie.records.testing import VALID_PDF, make_patient, pdf_with_open_action_javascript

# Until vigie/urls.py mounts the pages, this module is its own URL configuration: the
# project's routes plus the reconciliation pages where they will live.
urlpatterns = [
    path("intake/reconcile/", include("vigie.intake.reconcile_urls")),
    path("", include("vigie.urls")),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

BASE = "/intake/reconcile/"


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> Iterator[None]:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False
    # The messages checked here are English; the catalog's French is tested elsewhere.
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


def _client(role: Role, name: str | None = None, **kwargs: Any) -> tuple[Client, User]:
    user = make_user(name or f"user-{role}", role=role)
    client = Client(**kwargs)
    log_in(client, user)
    return client, user


def _make_stale(client: Client) -> None:
    # A session whose second factor was proved an hour ago: what a stolen cookie gives.
    session = client.session
    session[SECOND_FACTOR_AT] = time.time() - 3600
    session.save()


def _pending(content: bytes = VALID_PDF, **sender: Any) -> PendingDocument:
    identity: dict[str, Any] = {
        "ipp": "L-0042",
        "ipp_source": "LABO-SUD",
        "family_name": "DURAND",
        "given_names": "Camille",
        "birth_date": date(1985, 3, 14),
    }
    identity.update(sender)
    received = receive(
        Sender(**identity),
        DocumentMeta(
            kind="lab_result",
            title="Ferritine",
            clinical_date=date(2026, 11, 2),
            source_system="LABO-SUD",
        ),
        content,
        channel="hl7",
    )
    assert received.pending is not None
    return received.pending


def _attach_url(pending: PendingDocument, patient: Patient) -> str:
    return f"{BASE}{pending.pk}/attach/{patient.public_id}"


def _status(pending: PendingDocument) -> str:
    pending.refresh_from_db()
    return pending.status


# --- who may come here -----------------------------------------------------------------------


def test_doctor_cannot_reach_reconciliation() -> None:
    pending = _pending()
    patient = make_patient()
    for role in (Role.DOCTOR, Role.AUDITOR):
        client, _ = _client(role)
        assert client.get(BASE).status_code == 404
        assert client.get(f"{BASE}{pending.pk}/").status_code == 404
        assert client.get(_attach_url(pending, patient)).status_code == 404
        assert client.post(_attach_url(pending, patient), {"note": "mine"}).status_code == 404
        assert client.post(f"{BASE}{pending.pk}/reject", {"note": "junk"}).status_code == 404
    assert _status(pending) == Status.PENDING
    assert not Document.objects.exists()


def test_an_outsider_is_sent_to_the_login_page() -> None:
    pending = _pending()
    for url in (BASE, f"{BASE}{pending.pk}/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_an_unknown_or_reconciled_document_is_404() -> None:
    client, _ = _client(Role.ADMIN)
    pending = _pending()
    assert client.get(f"{BASE}no-such-document-id/").status_code == 404
    client.post(f"{BASE}{pending.pk}/reject", {"note": "test message"})
    assert client.get(f"{BASE}{pending.pk}/").status_code == 404
    assert client.get(_attach_url(pending, make_patient())).status_code == 404


# --- what the administrator sees -------------------------------------------------------------


def test_it_lists_what_was_received_and_why_it_was_not_matched() -> None:
    _pending(content=pdf_with_open_action_javascript())
    client, _ = _client(Role.ADMIN)

    page = client.get(BASE).content.decode()

    for expected in (
        "1 document waiting",
        "HL7 v2 (MLLP)",
        "LABO-SUD",
        "L-0042",
        "assigned by LABO-SUD",
        "DURAND Camille",
        "born 1985-03-14",
        "no patient has this IPP from LABO-SUD",
        "javascript",
        "active content",
    ):
        assert expected in page, expected
    # A title can itself be a diagnosis: the list shows the sender's metadata, not the title.
    assert "Ferritine" not in page
    assert "Ferritine" in client.get(f"{BASE}{pending_id(page)}/").content.decode()


def pending_id(page: str) -> str:
    import re

    found = re.search(r'href="/intake/reconcile/([^/"]+)/"', page)
    assert found is not None, "no link to the waiting document"
    return found.group(1)


def test_the_administrator_never_gets_the_document_content() -> None:
    # Separation of duties: IT reconciles on metadata, it does not read medical documents.
    pending = _pending()
    patient = make_patient("DURAND")
    client, _ = _client(Role.ADMIN)
    pages = [
        client.get(BASE),
        client.get(f"{BASE}{pending.pk}/"),
        client.get(f"{BASE}{pending.pk}/?q={patient.ipp}"),
        client.get(_attach_url(pending, patient)),
    ]
    for response in pages:
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        body = response.content
        assert b"%PDF" not in body
        assert f"/documents/{pending.pk}".encode() not in body
    assert not AuditEvent.objects.filter(action__startswith="document.read").exists()


def test_the_detail_suggests_same_name_and_birth_date_only() -> None:
    pending = _pending()
    same = make_patient("DURAND")  # same family name, born 1985-03-14 (the factory's date)
    other = make_patient("MARTIN")
    client, _ = _client(Role.ADMIN)

    response = client.get(f"{BASE}{pending.pk}/")

    assert response.context["candidates"] == [same]
    page = response.content.decode()
    assert _attach_url(pending, same) in page
    assert _attach_url(pending, other) not in page


def test_the_search_is_exact_on_ipp_or_ins_and_audited() -> None:
    pending = _pending(family_name="", given_names="", birth_date=None)
    patient = make_patient("MARTIN")
    PatientIdentifier.objects.create(patient=patient, source="RADIO-EST", value="R-77")
    assert patient.ins is not None
    client, _ = _client(Role.ADMIN, "it.admin")

    def found(query: str) -> list[Patient]:
        response = client.get(f"{BASE}{pending.pk}/?{urlencode({'q': query})}")
        assert response.status_code == 200
        return list(response.context["found"])

    assert found(patient.ipp) == [patient]
    assert found(patient.ins) == [patient]
    spaced = " ".join([patient.ins[:1], patient.ins[1:3], patient.ins[3:]])
    assert found(spaced) == [patient], "an INS typed with spaces is still that INS"
    assert found("R-77") == [patient]
    # No partial or name search: the page must not become a way to browse patients.
    assert found(patient.ipp[:-1]) == []
    assert found("MARTIN") == []

    searches = AuditEvent.objects.filter(action="intake.reconcile.search")
    assert searches.count() == 6
    assert searches.first().actor_username == "it.admin"  # type: ignore[union-attr]


# --- attaching -------------------------------------------------------------------------------


def test_attach_with_a_stale_second_factor_goes_through_reauth() -> None:
    pending = _pending()
    patient = make_patient()
    client, admin = _client(Role.ADMIN)
    _make_stale(client)
    confirm = _attach_url(pending, patient)
    reauth = f"/accounts/reauth/?{urlencode({'next': confirm})}"

    # A stolen cookie alone attaches nothing, by POST or via the confirmation page.
    posted = client.post(confirm, {"note": "sure"})
    assert posted.status_code == 302
    assert posted["Location"] == reauth
    assert client.get(confirm)["Location"] == reauth
    assert _status(pending) == Status.PENDING
    assert not Document.objects.exists()

    back = client.post(posted["Location"], {"code": fresh_code(totp_device(admin))})
    assert back.status_code == 302
    assert back["Location"] == confirm
    assert _status(pending) == Status.PENDING, "re-authenticating alone must attach nothing"

    assert client.post(confirm, {"note": "sure"}).status_code == 302
    assert Document.objects.get(pk=pending.pk).patient == patient


def test_attach_with_a_fresh_second_factor_names_the_patient_then_attaches_and_audits() -> None:
    pending = _pending()
    patient = make_patient("DURAND")
    client, _ = _client(Role.ADMIN, "it.admin")
    confirm = _attach_url(pending, patient)

    page = client.get(confirm).content.decode()
    born = date_format(patient.birth_date, "SHORT_DATE_FORMAT")
    assert f"<strong>DURAND Camille</strong>, born {born}, IPP {patient.ipp}?" in page
    assert not Document.objects.exists(), "showing the confirmation attaches nothing"

    response = client.post(confirm, {"note": "confirmed by phone with LABO-SUD"}, follow=True)

    assert response.redirect_chain == [(BASE, 302)]
    assert "is now in the record of DURAND Camille" in response.content.decode()
    document = Document.objects.get(pk=pending.pk)
    assert document.patient == patient
    assert _status(pending) == Status.ATTACHED
    event = AuditEvent.objects.get(action="intake.reconcile.attach")
    assert event.actor_username == "it.admin"
    assert event.patient_ipp == patient.ipp
    assert event.document_id == pending.pk
    assert event.extra["note"] == "confirmed by phone with LABO-SUD"
    # Next time the laboratory's IPP alone finds her.
    assert PatientIdentifier.objects.get(source="LABO-SUD", value="L-0042").patient == patient


def test_a_document_is_attached_once_even_from_two_tabs() -> None:
    pending = _pending()
    first, second = make_patient(), make_patient()
    client, _ = _client(Role.ADMIN)
    client.post(_attach_url(pending, first))
    # The second tab still shows the form; its POST must not move the document.
    assert client.post(_attach_url(pending, second)).status_code == 404
    assert Document.objects.get(pk=pending.pk).patient == first


# --- rejecting -------------------------------------------------------------------------------


def test_reject_needs_a_note() -> None:
    pending = _pending()
    client, _ = _client(Role.ADMIN, "it.admin")

    for note in ("", "   "):
        response = client.post(f"{BASE}{pending.pk}/reject", {"note": note})
        assert response.status_code == 400
        assert "Say why the document is rejected." in response.content.decode()
    assert _status(pending) == Status.PENDING
    assert not AuditEvent.objects.filter(action="intake.reconcile.reject").exists()

    response = client.post(f"{BASE}{pending.pk}/reject", {"note": "test message"}, follow=True)

    assert response.redirect_chain == [(BASE, 302)]
    assert "was rejected" in response.content.decode()
    pending.refresh_from_db()
    assert (pending.status, pending.resolution_note) == (Status.REJECTED, "test message")
    event = AuditEvent.objects.get(action="intake.reconcile.reject")
    assert (event.actor_username, event.reason) == ("it.admin", "test message")


def test_reject_needs_a_post() -> None:
    pending = _pending()
    client, _ = _client(Role.ADMIN)
    assert client.get(f"{BASE}{pending.pk}/reject").status_code == 405
    assert _status(pending) == Status.PENDING


# --- cross-site requests ---------------------------------------------------------------------


def test_a_cross_site_form_cannot_attach_or_reject() -> None:
    pending = _pending()
    patient = make_patient()
    client, _ = _client(Role.ADMIN, enforce_csrf_checks=True)

    assert client.post(_attach_url(pending, patient), {"note": "x"}).status_code == 403
    assert client.post(f"{BASE}{pending.pk}/reject", {"note": "x"}).status_code == 403

    assert _status(pending) == Status.PENDING
    assert not Document.objects.exists()
