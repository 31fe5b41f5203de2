"""Decoy patients and documents: realistic, encrypted, in nobody's scope, and loud when touched.

Audit events must really commit here (the tripwire listens to durable events), hence
`audit_committing` (a transactional database) instead of the usual rolled-back test.
"""

from __future__ import annotations

import io
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from django.contrib.admin.utils import quote
from django.core.management import call_command
from django.test import Client
from pypdf import PdfReader

from vigie import vault
from vigie.accounts.models import Role, User
from vigie.accounts.testing import fresh_code, log_in, make_user, totp_device
from vigie.alerts.models import Alert, Audience
from vigie.audit.models import AuditEvent
from vigie.guard import probe, probe_auth, probe_vantage, tripwire
from vigie.guard.decoys import ACTION_CREATED, create_canaries
from vigie.guard.models import Canary, UsedProbeNonce
from vigie.guard.policy import Policy
from vigie.records import access
from vigie.records.identifiers import validate_ipp, validate_nir
from vigie.records.models import CareRelationship, Document, EmergencyAccess, Patient
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.usefixtures("audit_committing")

OUTSIDER_IP = "203.0.113.77"
VANTAGE_IP = "198.51.100.9"
OUTSIDER_UA = "Mozilla/5.0 (compatible; leaked-link-crawler/2.1)"
ALARM_DEADLINE = 5.0


@pytest.fixture(autouse=True)
def _env(settings, vault_home: Path) -> None:
    # Plain HTTP test client (test mode may keep production's HTTPS redirect).
    settings.SECURE_SSL_REDIRECT = False
    # Flushed tables between tests: never reuse the previous test's decoys.
    tripwire.decoys.invalidate()


@pytest.fixture
def decoy() -> Canary:
    make_patient("REEL")  # a real patient first, so the decoy's IPP copies the clinic's shape
    (created,) = create_canaries(1, documents_per_patient=2, rng=random.Random(11))
    return created


def decoy_documents(decoy: Canary) -> list[Document]:
    return list(Document.objects.filter(patient_id=decoy.patient_id))


def signed_in(user: User) -> Client:
    client = Client()
    log_in(client, user)
    return client


def wait_for_alarm(**details: str) -> list[Alert]:
    """The decoy alerts (one per audience) matching `details`, polled up to the deadline."""
    deadline = time.monotonic() + ALARM_DEADLINE
    while True:
        found = [
            alert
            for alert in Alert.objects.filter(kind=tripwire.ALERT_KIND)
            if all(alert.details.get(k) == v for k, v in details.items())
        ]
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def touched_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=tripwire.ACTION_TOUCHED))


# --- creation -------------------------------------------------------------------------------


def test_decoys_look_like_real_patients_and_pass_the_same_validators(vault_home: Path) -> None:
    make_patient("REEL")
    decoys = create_canaries(2, documents_per_patient=2, rng=random.Random(3))

    assert [str(d) for d in decoys] == ["decoy 1", "decoy 2"]
    for created in decoys:
        patient = Patient.objects.get(pk=created.patient_id)
        patient.full_clean()  # the model's own validators, as for an entered patient
        assert patient.ins is not None  # with an INS, like most real patients
        assert validate_nir(patient.ins) == patient.ins
        assert validate_ipp(patient.ipp) == patient.ipp
        # Same shape as the real patient's IPP ("IPP" + 7 digits): nothing stands out.
        assert re.fullmatch(r"IPP\d{7}", patient.ipp)
        assert patient.family_name
        assert patient.given_names
        assert patient.city
        assert patient.postal_code.startswith("69")
        assert 0 <= (created.created_at.date() - patient.birth_date).days // 365 <= 100
        assert created.touches == 0
        assert created.last_touched_at is None
        assert not CareRelationship.objects.filter(patient=patient).exists()
        assert not EmergencyAccess.objects.filter(patient=patient).exists()
        documents = decoy_documents(created)
        assert len(documents) == 2
        for document in documents:
            # Stored by the vault like any document: ciphertext on disk, a PDF once opened.
            on_disk = vault.get_store().path_for(document.pk).read_bytes()
            assert b"%PDF" not in on_disk
            assert patient.family_name.upper().encode("cp1252") not in on_disk
            with vault.open(document.pk, document.kek_id, bytes(document.wrapped_key)) as stream:
                plaintext = b"".join(stream)
            assert plaintext.startswith(b"%PDF")
            assert document.size == len(plaintext)
            # A thief holding the bytes must not learn it is a decoy: no demo notice at all.
            pdf = PdfReader(io.BytesIO(plaintext))
            text = " ".join(page.extract_text() for page in pdf.pages).lower()
            metadata = " ".join(str(v) for v in (pdf.metadata or {}).values()).lower()
            assert "fictif" not in text
            assert "démonstration" not in text
            assert "fictif" not in metadata
            assert "démonstration" not in metadata
    created_events = AuditEvent.objects.filter(action=ACTION_CREATED)
    assert {e.patient_id for e in created_events} == {d.patient_id for d in decoys}
    # Creating decoys (their ingest events included) is not a touch.
    assert not Alert.objects.filter(kind=tripwire.ALERT_KIND).exists()
    assert touched_events() == []


def test_decoys_never_appear_in_any_doctors_list(decoy: Canary) -> None:
    doctor = make_user("dr.list", role=Role.DOCTOR)
    real = make_patient("SUIVI")
    CareRelationship.objects.create(doctor=doctor, patient=real, role="treating")
    for user in User.objects.filter(role=Role.DOCTOR):
        assert decoy.patient_id not in set(
            access.patients_in_scope(user).values_list("pk", flat=True)
        )

    client = signed_in(doctor)
    patient = Patient.objects.get(pk=decoy.patient_id)
    listed = client.get("/")
    assert [row[0].pk for row in listed.context["rows"]] == [real.pk]
    searched = client.get("/", {"q": patient.family_name})
    assert [row[0].pk for row in searched.context["rows"]] == []
    assert patient.public_id not in searched.content.decode()
    # Nor among the new documents (a decoy has documents, and nobody has opened them).
    news = client.get("/inbox/").content.decode()
    assert patient.public_id not in news
    assert patient.family_name not in news


def test_the_command_creates_n_decoys_and_lists_their_touches() -> None:
    out = io.StringIO()
    call_command("canary", "create", "--count", "3", "--documents", "1", stdout=out)
    assert Canary.objects.count() == 3
    for created in Canary.objects.all():
        assert Document.objects.filter(patient_id=created.patient_id).count() == 1
    assert out.getvalue().count("created decoy") == 3

    Canary.objects.filter(label="decoy 2").update(touches=4)
    listing = io.StringIO()
    call_command("canary", "list", stdout=listing)
    row = next(line for line in listing.getvalue().splitlines() if "decoy 2" in line)
    assert " 4 " in row


# --- touches over HTTP ----------------------------------------------------------------------


def test_outsider_fetching_a_decoy_link_raises_alarm(decoy: Canary) -> None:
    document = decoy_documents(decoy)[0]
    outsider = Client(REMOTE_ADDR=OUTSIDER_IP, HTTP_USER_AGENT=OUTSIDER_UA)

    started = time.monotonic()
    response = outsider.get(f"/documents/{document.pk}/content")
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    elapsed = time.monotonic() - started

    assert elapsed < ALARM_DEADLINE
    assert {a.audience for a in alerts} == {Audience.ADMIN, Audience.AUDITOR}
    for alert in alerts:
        assert alert.severity == "critical"
        assert alert.details["actor"] == "anonymous"
        assert alert.details["user_agent"] == OUTSIDER_UA
        assert alert.details["document_id"] == document.pk
        assert alert.details["decoy"] == "decoy 1"
        assert OUTSIDER_IP in alert.summary
        assert OUTSIDER_UA in alert.summary
    (event,) = touched_events()
    assert event.outcome == "denied"
    assert event.source_ip == OUTSIDER_IP
    assert event.document_id == document.pk
    decoy.refresh_from_db()
    assert decoy.touches == 1
    assert decoy.last_touched_at is not None

    # The decoy does not give itself away: an unknown id gets the very same answer.
    unknown = Client(REMOTE_ADDR=OUTSIDER_IP).get(
        "/documents/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/content"
    )
    assert response.status_code == unknown.status_code == 302
    assert response["Location"].split("?")[0] == unknown["Location"].split("?")[0]
    assert b"%PDF" not in response.content


def test_outsider_following_an_indexed_login_link_to_a_decoy_raises_alarm(decoy: Canary) -> None:
    # What a search engine keeps when it meets the login wall: the login URL with ?next=.
    document = decoy_documents(decoy)[0]
    response = Client(REMOTE_ADDR=OUTSIDER_IP).get(
        "/accounts/login/", {"next": f"/documents/{document.pk}/"}
    )
    assert response.status_code == 200
    assert len(wait_for_alarm(address=OUTSIDER_IP)) == 2


def test_doctor_trying_a_decoy_document_id_is_named_in_the_alarm(decoy: Canary) -> None:
    doctor = make_user("dr.curieux", role=Role.DOCTOR)
    real = make_patient("SUIVIE")
    CareRelationship.objects.create(doctor=doctor, patient=real, role="treating")
    own = make_document(real)
    client = signed_in(doctor)
    client.defaults["REMOTE_ADDR"] = "10.20.0.15"

    # Reading one's own patient's document is not a touch.
    assert client.get(f"/documents/{own.pk}/").status_code == 200
    assert not Alert.objects.filter(kind=tripwire.ALERT_KIND).exists()

    document = decoy_documents(decoy)[0]
    response = client.get(f"/documents/{document.pk}/")
    assert (
        response.status_code
        == client.get("/documents/AAAAAAAAAAAAAAAAAAAAAAAA/").status_code
        == 404
    )
    alerts = wait_for_alarm(actor=doctor.username)
    assert len(alerts) == 2
    assert alerts[0].details["address"] == "10.20.0.15"
    # The view's own refusal event names the decoy too: still one alarm for one request.
    assert AuditEvent.objects.filter(
        action="document.read.denied", patient_id=decoy.patient_id
    ).exists()
    (event,) = touched_events()
    assert event.actor_username == doctor.username


def test_admin_opening_the_decoy_patient_in_the_django_admin_raises_alarm(decoy: Canary) -> None:
    admin = make_user("it.admin", role=Role.ADMIN)
    client = signed_in(admin)

    # The patient list shows every patient, decoys included: browsing it is no touch.
    assert client.get("/admin/records/patient/").status_code == 200
    assert not Alert.objects.filter(kind=tripwire.ALERT_KIND).exists()

    response = client.get(f"/admin/records/patient/{decoy.patient_id}/change/")
    assert response.status_code == 200
    alerts = wait_for_alarm(actor=admin.username)
    assert len(alerts) == 2
    assert alerts[0].details["path"] == f"/admin/records/patient/{decoy.patient_id}/change/"


def test_admin_opening_a_decoy_document_in_the_django_admin_raises_alarm(decoy: Canary) -> None:
    admin = make_user("it.admin2", role=Role.ADMIN)
    client = signed_in(admin)
    # Pick a document id the admin escapes in its URLs, if there is one.
    document = max(decoy_documents(decoy), key=lambda d: "_" in d.pk)
    assert client.get(f"/admin/records/document/{quote(document.pk)}/change/").status_code == 200
    alerts = wait_for_alarm(actor=admin.username)
    assert len(alerts) == 2
    assert alerts[0].details["document_id"] == document.pk


def test_admin_filtering_relationships_by_the_decoy_raises_alarm(decoy: Canary) -> None:
    admin = make_user("it.admin3", role=Role.ADMIN)
    response = signed_in(admin).get(
        "/admin/records/carerelationship/", {"patient__id__exact": decoy.patient_id}
    )
    assert response.status_code == 200
    assert len(wait_for_alarm(actor=admin.username)) == 2


# --- touches seen through the audit trail ----------------------------------------------------


def test_emergency_lookup_and_grant_for_the_decoy_raise_alarm(decoy: Canary) -> None:
    doctor = make_user("dr.urgence", role=Role.DOCTOR)
    client = signed_in(doctor)
    patient = Patient.objects.get(pk=decoy.patient_id)

    # No decoy token in the URL or the query: only the audit event names the patient.
    response = client.post("/emergency/", {"ins": patient.ins, "ipp": "", "birth_date": ""})
    assert response.status_code == 302
    alerts = wait_for_alarm(actor=doctor.username, via="emergency.lookup")
    assert len(alerts) == 2

    response = client.post(
        "/emergency/confirm",
        {
            "reason": "vital_emergency",
            "justification": "Admitted unconscious, no relative reachable, history needed.",
            "code": fresh_code(totp_device(doctor)),
        },
    )
    assert response.status_code == 302
    assert EmergencyAccess.objects.filter(doctor=doctor, patient=patient).exists()
    # One touch per request: the lookup, then the grant (its event commits with the grant).
    vias = sorted(e.extra["via"] for e in touched_events())
    assert vias == ["emergency.grant", "emergency.lookup"]
    decoy.refresh_from_db()
    assert decoy.touches == 2


def test_a_touch_from_a_process_without_request_names_the_system(decoy: Canary) -> None:
    from vigie.audit.log import record

    record("export.patient", patient=Patient.objects.get(pk=decoy.patient_id))
    alerts = wait_for_alarm(actor="system", via="export.patient")
    assert len(alerts) == 2


def test_attack_one_client_request_id_cannot_mute_the_alarm_for_other_addresses(
    decoy: Canary,
) -> None:
    # The same X-Request-ID on every touch: each is still its own request, counted and
    # alarmed, whoever chose the header.
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    addresses = [f"203.0.113.{n}" for n in range(10, 20)]
    for address in addresses:
        Client(REMOTE_ADDR=address, HTTP_X_REQUEST_ID="x").get(path)

    events = touched_events()
    assert len(events) == 10
    assert sorted(e.source_ip for e in events) == sorted(addresses)
    assert len({e.request_id for e in events}) == 10
    assert {e.extra["client_request_id"] for e in events} == {"x"}
    decoy.refresh_from_db()
    assert decoy.touches == 10
    for address in addresses:
        alerts = wait_for_alarm(address=address)
        assert {a.audience for a in alerts} == {Audience.ADMIN, Audience.AUDITOR}


def _fhir_form(vigie_id: str) -> str:
    # As `intake.fhir.resources.fhir_id` writes it (the guard may not import intake).
    return vigie_id.replace("_", ".")


@pytest.fixture
def decoy_with_underscores(monkeypatch: pytest.MonkeyPatch) -> Canary:
    # Vigie's ids are URL-safe base64: "_" is common but not certain; make it certain here.
    urlsafe = secrets.token_urlsafe
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n=None: "_" + urlsafe(n)[1:])
    make_patient("REEL")
    (created,) = create_canaries(1, documents_per_patient=1, rng=random.Random(11))
    monkeypatch.setattr(secrets, "token_urlsafe", urlsafe)
    return created


@pytest.mark.parametrize("resource", ["DocumentReference", "Binary", "Patient"])
def test_attack_a_decoy_id_in_fhir_form_fetched_anonymously_raises_alarm(
    decoy_with_underscores: Canary, resource: str
) -> None:
    decoy = decoy_with_underscores
    if resource == "Patient":
        vigie_id = Patient.objects.get(pk=decoy.patient_id).public_id
    else:
        vigie_id = decoy_documents(decoy)[0].pk
    assert "_" in vigie_id
    path = f"/fhir/{resource}/{_fhir_form(vigie_id)}"

    response = Client(REMOTE_ADDR=OUTSIDER_IP, HTTP_USER_AGENT=OUTSIDER_UA).get(path)

    assert response.status_code == 401  # no API key: the same answer as for any id
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert {a.audience for a in alerts} == {Audience.ADMIN, Audience.AUDITOR}
    assert alerts[0].details["actor"] == "anonymous"
    assert alerts[0].details["token"] == vigie_id
    decoy.refresh_from_db()
    assert decoy.touches == 1


def test_a_mixed_fhir_form_and_a_fhir_form_in_a_search_trip_too(
    decoy_with_underscores: Canary,
) -> None:
    public_id = Patient.objects.get(pk=decoy_with_underscores.patient_id).public_id
    fhir = _fhir_form(public_id)
    # The FHIR views turn every "." back into "_": a partly converted id names the decoy too.
    mixed = fhir.replace(".", "_", 1) if fhir.count(".") > 1 else fhir
    assert tripwire.decoys.match_request(f"/fhir/Patient/{mixed}", "") is not None
    assert (
        tripwire.decoys.match_request("/fhir/DocumentReference", f"patient=Patient/{fhir}")
        is not None
    )
    # An id that is not a decoy's, in either form, matches nothing.
    assert tripwire.decoys.match_request("/fhir/Patient/abc.def", "") is None


# --- the guard's own probe --------------------------------------------------------------------


VANTAGE_BASE = "https://portal.example"


def handed_to_the_vantage_point(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What a compromised vantage host holds after one probe round: path → probe header.

    Taken from the job the guard really sends, so these tests hold the attacker's view
    whatever the signature's format (and ran unchanged against the code before it)."""
    jobs: list[dict[str, object]] = []

    def vantage(policy: object, job: dict[str, object]) -> dict[str, object]:
        jobs.append(job)
        raise probe_vantage.FetchFailed("the test keeps the headers and fetches nothing")

    monkeypatch.setattr(probe_vantage, "run_fetcher", vantage)
    policy = Policy(listeners=(), maintenance_ports=(), probe_base_urls=(VANTAGE_BASE,))
    probe.run_round(replace(policy, probe_sample_size=Document.objects.count()), ports={})
    (job,) = jobs
    return {
        request["url"].removeprefix(VANTAGE_BASE): request["headers"][probe_auth.HEADER]
        for request in job["requests"]  # type: ignore[attr-defined]
    }


def probe_fetches(path: str, header: str, method: str = "get") -> None:
    response = getattr(Client(REMOTE_ADDR=VANTAGE_IP), method)(path, HTTP_X_VIGIE_PROBE=header)
    assert response.status_code in (302, 405)  # the probe is an outsider like any other


def test_signed_probe_of_a_decoy_is_recorded_without_alarm(decoy: Canary, monkeypatch) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = handed_to_the_vantage_point(monkeypatch)[path]

    probe_fetches(path, header)

    assert not Alert.objects.filter(kind=tripwire.ALERT_KIND).exists()
    (event,) = AuditEvent.objects.filter(action=tripwire.ACTION_PROBED)
    assert event.source_ip == VANTAGE_IP
    assert event.patient_id == decoy.patient_id
    assert touched_events() == []
    decoy.refresh_from_db()
    assert decoy.touches == 0


def test_attack_replayed_probe_signature_raises_the_alarm(decoy: Canary, monkeypatch) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = handed_to_the_vantage_point(monkeypatch)[path]
    probe_fetches(path, header)  # the probe's own request: spends the signature
    assert not Alert.objects.filter(kind=tripwire.ALERT_KIND).exists()

    # The vantage host's owner fetches the decoy again with the header he was handed.
    Client(REMOTE_ADDR=OUTSIDER_IP).get(path, HTTP_X_VIGIE_PROBE=header)

    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "replayed"
    (event,) = touched_events()
    assert event.source_ip == OUTSIDER_IP


def test_attack_replayed_probe_signature_from_the_vantage_host_itself_raises_the_alarm(
    decoy: Canary, monkeypatch
) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = handed_to_the_vantage_point(monkeypatch)[path]
    probe_fetches(path, header)
    probe_fetches(path, header)
    alerts = wait_for_alarm(address=VANTAGE_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "replayed"


@pytest.mark.parametrize(
    ("alter", "method"),
    [
        pytest.param(lambda path, other: path + "?next=/", "get", id="query-added"),
        pytest.param(lambda path, other: other, "get", id="another-decoy-document"),
        pytest.param(lambda path, other: path.removesuffix("content"), "get", id="another-form"),
        pytest.param(lambda path, other: path, "post", id="post-instead-of-get"),
        pytest.param(lambda path, other: path, "head", id="head-instead-of-get"),
    ],
)
def test_attack_altered_probe_signature_for_another_request_raises_the_alarm(
    decoy: Canary, monkeypatch, alter: Callable[[str, str], str], method: str
) -> None:
    path, other = (f"/documents/{d.pk}/content" for d in decoy_documents(decoy))
    header = handed_to_the_vantage_point(monkeypatch)[path]
    outsider = Client(REMOTE_ADDR=OUTSIDER_IP)
    getattr(outsider, method)(alter(path, other), HTTP_X_VIGIE_PROBE=header)
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "altered"
    assert not AuditEvent.objects.filter(action=tripwire.ACTION_PROBED).exists()


def _edit_field(header: str, index: int, edit: Callable[[str], str]) -> str:
    fields = header.split(".")
    fields[index] = edit(fields[index])
    return ".".join(fields)


def _flip_last(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda h: _edit_field(h, 1, lambda e: str(int(e) + 600)), id="expiry-pushed"),
        pytest.param(lambda h: _edit_field(h, 2, _flip_last), id="nonce-changed"),
        pytest.param(lambda h: _edit_field(h, 3, _flip_last), id="mac-changed"),
    ],
)
def test_attack_altered_probe_signature_fields_raise_the_alarm(
    decoy: Canary, monkeypatch, alter: Callable[[str], str]
) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = alter(handed_to_the_vantage_point(monkeypatch)[path])
    Client(REMOTE_ADDR=OUTSIDER_IP).get(path, HTTP_X_VIGIE_PROBE=header)
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "altered"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("1700000000.deadbeef", id="the-old-format"),
        pytest.param("v2.1700000000.00.00", id="short-fields"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_forged_probe_signature_raises_alarm(decoy: Canary, header: str) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    Client(REMOTE_ADDR=OUTSIDER_IP).get(path, HTTP_X_VIGIE_PROBE=header)
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "malformed"


def test_attack_probe_signature_used_31_seconds_later_raises_the_alarm(
    decoy: Canary, monkeypatch
) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = handed_to_the_vantage_point(monkeypatch)[path]
    later = time.time() + 31
    monkeypatch.setattr("vigie.guard.probe_auth.time.time", lambda: later)
    Client(REMOTE_ADDR=OUTSIDER_IP).get(path, HTTP_X_VIGIE_PROBE=header)
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "expired"


def test_attack_probe_signature_valid_longer_than_30_seconds_raises_the_alarm(
    decoy: Canary,
) -> None:
    # Made with the key, but for a minute: whoever made it, it is not one of the probe's.
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = probe_auth.sign("GET", path, valid_for=60)
    Client(REMOTE_ADDR=OUTSIDER_IP).get(path, HTTP_X_VIGIE_PROBE=header)
    alerts = wait_for_alarm(address=OUTSIDER_IP)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "too-long"


def test_attack_probe_signature_cannot_mute_a_signed_in_session(decoy: Canary, monkeypatch) -> None:
    # A doctor's session (or an API key) that borrows the probe's header is still alarmed,
    # and does not spend it: the probe's own request then passes.
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    header = handed_to_the_vantage_point(monkeypatch)[path]
    doctor = make_user("dr.curieux", role=Role.DOCTOR)
    client = signed_in(doctor)
    client.get(path, HTTP_X_VIGIE_PROBE=header)
    alerts = wait_for_alarm(actor=doctor.username)
    assert len(alerts) == 2
    assert alerts[0].details["probe_signature"] == "with-credentials"

    probe_fetches(path, header)
    assert AuditEvent.objects.filter(action=tripwire.ACTION_PROBED).count() == 1


def test_spent_nonces_are_pruned_once_their_signature_expired(decoy: Canary) -> None:
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    probe_fetches(path, probe_auth.sign("GET", path))
    (used,) = UsedProbeNonce.objects.all()
    assert probe_auth.prune(used.expires_at.timestamp()) == 0  # still needed
    assert probe_auth.prune(used.expires_at.timestamp() + probe_auth.PRUNE_AFTER_SECONDS + 1) == 1
    assert not UsedProbeNonce.objects.exists()


# --- robustness -------------------------------------------------------------------------------


def test_a_failing_tripwire_still_answers_like_any_other_url(decoy: Canary, monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("alert store down")

    monkeypatch.setattr(tripwire, "trip", broken)
    path = f"/documents/{decoy_documents(decoy)[0].pk}/content"
    response = Client(REMOTE_ADDR=OUTSIDER_IP).get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_decoy_created_elsewhere_is_armed_after_the_refresh_delay(monkeypatch) -> None:
    # Another process (the `vigie canary create` command) cannot invalidate our index.
    monkeypatch.setattr(tripwire, "REFRESH_SECONDS", 0.2)
    assert tripwire.decoys.match_request("/", "") is None  # loads an empty index
    (created,) = create_canaries(1, documents_per_patient=1, rng=random.Random(5))
    # As this process last saw it: loaded just before the other process committed.
    tripwire.decoys._snapshot = tripwire._Snapshot({}, frozenset(), {}, {}, time.monotonic())
    public_id = Patient.objects.get(pk=created.patient_id).public_id
    assert tripwire.decoys.match_request(f"/patients/{public_id}/", "") is None
    time.sleep(0.25)
    match = tripwire.decoys.match_request(f"/patients/{public_id}/", "")
    assert match is not None
    assert match.canary_id == created.pk
