"""Lockdown holds on every route, not only on the portal's: the attack of issue 16.1.

A review found that during a lockdown a doctor's session still got the PDF bytes from
/fhir/Binary/<id>, and answers from the FHIR DocumentReference and Patient searches, because
lockdown was enforced by URL namespace. It is now enforced where data leaves (the access
decision and the one door), and this walk proves it without naming a single route:

1. every route of the URL configuration is found at run time and filled with the real
   ids of a patient and a document in the doctor's scope;
2. each is asked by GET (bare, and with every search parameter naming the patient) and by
   POST (a form naming the patient), as a verified doctor and as an API-key client, and by
   GET as a verified IT administrator (whose admin and reconciliation pages list patients;
   his POSTs would edit the scene, and reading is the question);
3. before the lockdown, the walk must see the patient's data somewhere (else it proves
   nothing); during the lockdown, no answer of any route may carry the document's bytes,
   the patient's name, INS, IPP or the document's title, and every request that disclosed
   them before now answers 503.

A route added later is walked the same way without anyone editing this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import product
from typing import Any

import pytest
from django.apps import apps
from django.http.response import HttpResponseBase
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils import timezone
from django.utils.regex_helper import normalize

from vigie.accounts.models import Role, User
from vigie.accounts.testing import log_in, make_user
from vigie.guard import lockdown
from vigie.intake.fhir.resources import INS_SYSTEM
from vigie.intake.rest.testing import new_key
from vigie.records.models import CareRelationship, Document, Patient
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db

# Distinctive values, so a hit in a body can only be this patient's data.
FAMILY = "Quenouillard"
GIVEN = "Athenais"
TITLE = "Scanner thoracique Zephyrin"
PDF_MARKER = b"VIGIE-LOCKDOWN-WALK-PDF-BODY"
PDF = b"%PDF-1.4\n" + PDF_MARKER + b"\n" + b"x" * 2048 + b"\n%%EOF\n"
LOCKDOWN_MIDDLEWARE = "vigie.guard.middleware.LockdownMiddleware"
LOGIN_PAGES = {"/accounts/login/", "/admin/login/"}


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Any) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@dataclass(frozen=True)
class Scene:
    doctor: User
    admin: User
    patient: Patient
    document: Document
    key_text: str

    def secrets(self) -> dict[str, bytes]:
        """What must never leave during a lockdown, as it could appear in a body."""
        ins = self.patient.ins or ""
        grouped = f"{ins[0]} {ins[1:3]} {ins[3:5]} {ins[5:7]} {ins[7:10]} {ins[10:13]} {ins[13:]}"
        return {
            "document bytes": PDF_MARKER.lower(),
            "family name": FAMILY.lower().encode(),
            "given name": GIVEN.lower().encode(),
            "INS": ins.encode(),
            "INS (grouped)": grouped.encode(),
            "IPP": self.patient.ipp.lower().encode(),
            "document title": TITLE.lower().encode(),
        }


@pytest.fixture
def scene() -> Scene:
    doctor = make_user("dr.walk", role=Role.DOCTOR)
    patient = make_patient(FAMILY)
    patient.given_names = GIVEN
    patient.save()
    CareRelationship.objects.create(
        doctor=doctor,
        patient=patient,
        role="treating",
        valid_from=timezone.now() - timedelta(days=1),
    )
    document = make_document(patient, PDF, title=TITLE)
    _key, key_text = new_key("labo-walk")
    admin = make_user("it.walk", role=Role.ADMIN)
    return Scene(doctor, admin, patient, document, key_text)


# --- the routes, found at run time ---------------------------------------------------

_GENERIC = [
    "1",
    "P7K2M9QX4T",
    "00000000-0000-4000-8000-000000000001",
    "x",
    *sorted({config.label for config in apps.get_app_configs()}),
]


def _patterns(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        regex = entry.pattern.regex.pattern.removeprefix("^")
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, prefix + regex)
        else:
            yield prefix + regex, entry


def _resolves_to(path: str, callback: Any) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.func is callback or getattr(match.func, "__wrapped__", None) is callback


def _paths(regex: str, callback: Any, scene: Scene) -> list[str]:
    """Every URL of this pattern filled with the scene's real values (by parameter name;
    any real value for a name not known here), or with a generic value if none fits."""
    patient, document = scene.patient, scene.document
    by_name = {
        "public_id": [patient.public_id],
        "doc_id": [document.pk],
        "document_id": [document.pk],
        "patient_id": [str(patient.pk)],
        "ipp": [patient.ipp],
        "username": [scene.doctor.username],
        "object_id": [str(patient.pk)],
    }
    pool = [patient.public_id, document.pk, str(patient.pk), patient.ipp, patient.ins or ""]
    found: list[str] = []
    for template, params in normalize(regex):
        for values_of in (
            lambda name: by_name.get(name, pool),
            lambda name: by_name.get(name, _GENERIC),
        ):
            choices = [values_of(name) for name in params]
            paths = [
                path
                for values in product(*choices)
                if _resolves_to(
                    path := "/" + template % dict(zip(params, values, strict=True)), callback
                )
            ]
            if paths:
                found.extend(paths)
                break
    return found


def routes(scene: Scene) -> list[tuple[str, str]]:
    """(view name, path) of every route, every include (the admin's too) expanded."""
    found: list[tuple[str, str]] = []
    unbuildable: list[str] = []
    for regex, pattern in _patterns(get_resolver()):
        paths = _paths(regex, pattern.callback, scene)
        if not paths:
            unbuildable.append(regex)
        found.extend((resolve(path).view_name, path) for path in dict.fromkeys(paths))
    assert not unbuildable, f"cannot build a URL for: {unbuildable}; teach _paths a value"
    return found


# --- the walk --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    who: str
    method: str
    url: str
    view_name: str
    status: int
    text: bytes  # body and Location, lower-cased
    sent: bytes  # what the request itself carried (path, query, form), lower-cased

    def disclosed(self, secrets: dict[str, bytes]) -> list[str]:
        # A value the request carried may come back as an echo (a search box keeps its
        # text, a redirect keeps `next`): only what the asker did not send is a disclosure.
        # Each request carries one or two identifiers at most, so the others still count.
        return [
            name
            for name, value in secrets.items()
            if value and value in self.text and value not in self.sent
        ]


def _queries(scene: Scene) -> list[dict[str, str]]:
    patient = scene.patient
    ins = patient.ins or ""
    return [
        {},
        {"q": FAMILY},
        {"q": ins},
        {"patient": patient.public_id},
        {"subject": f"Patient/{patient.public_id}"},
        {"identifier": ins},
        {"identifier": f"{INS_SYSTEM}|{ins}"},
        {"identifier": patient.ipp},
        {"name": FAMILY},
    ]


def _form(scene: Scene) -> dict[str, str]:
    patient = scene.patient
    return {
        "q": FAMILY,
        "ins": patient.ins or "",
        "ipp": patient.ipp,
        "birth_date": patient.birth_date.isoformat(),
        "patient": patient.public_id,
    }


def _text(response: HttpResponseBase) -> bytes:
    body = (
        b"".join(response.streaming_content)  # type: ignore[attr-defined]
        if response.streaming
        else bytes(response.content)  # type: ignore[attr-defined]
    )
    return (body + str(response.get("Location", "")).encode()).lower()


def _doctor_client(scene: Scene) -> Client:
    client = Client(raise_request_exception=False)
    log_in(client, scene.doctor)
    return client


def _refuses_whoever_asks(response: HttpResponseBase) -> bool:
    """The route turns this client away whatever it asks (who it is, not what it asks)."""
    if response.status_code in (401, 403, 405):
        return True
    location = str(response.get("Location", "")).split("?")[0]
    return response.status_code == 302 and location in LOGIN_PAGES


def walk(scene: Scene) -> list[Answer]:
    answers: list[Answer] = []
    doctor = _doctor_client(scene)
    it_admin = Client(raise_request_exception=False)
    log_in(it_admin, scene.admin)
    key_client = Client(
        raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {scene.key_text}"
    )

    def ask(
        who: str, client: Client, view_name: str, path: str, method: str, data: dict[str, str]
    ) -> HttpResponseBase:
        response = client.get(path, data) if method == "GET" else client.post(path, data)
        url = response.request["PATH_INFO"] + "?" + response.request["QUERY_STRING"]
        sent = (path + " " + " ".join(data.values())).lower().encode()
        answers.append(
            Answer(who, method, url, view_name, response.status_code, _text(response), sent)
        )
        for name, signed_in, user in (
            ("doctor", doctor, scene.doctor),
            ("admin", it_admin, scene.admin),
        ):
            if who == name and "_auth_user_id" not in signed_in.session:
                # A route logged this user out (logout): sign in again, or every later
                # answer would be a login redirect that hides a leak.
                log_in(signed_in, user)
        return response

    bare, *searches = _queries(scene)
    for view_name, path in routes(scene):
        for who, client in (("doctor", doctor), ("api key", key_client)):
            first = ask(who, client, view_name, path, "GET", bare)
            # Search parameters cannot change who is asking: where this client is turned
            # away as such (the admin's 124 routes send a doctor to their login), they are
            # not tried, which keeps the walk to seconds.
            if not _refuses_whoever_asks(first):
                for query in searches:
                    ask(who, client, view_name, path, "GET", query)
            ask(who, client, view_name, path, "POST", _form(scene))
        first = ask("admin", it_admin, view_name, path, "GET", bare)
        if not _refuses_whoever_asks(first):
            for query in searches:
                ask("admin", it_admin, view_name, path, "GET", query)
    return answers


def _disclosures(
    answers: list[Answer], secrets: dict[str, bytes]
) -> dict[tuple[str, str, str], Answer]:
    return {(a.who, a.method, a.url): a for a in answers if a.disclosed(secrets)}


def test_attack_lockdown_leaves_a_route_that_discloses_patient_data(scene: Scene) -> None:
    secrets = scene.secrets()
    before = _disclosures(walk(scene), secrets)
    # The walk must be able to see a disclosure, on the portal and on FHIR alike.
    seen = {a.view_name for a in before.values()}
    assert {
        "portal:home",
        "portal:patient_detail",
        "portal:document_viewer",
        "portal:document_content",
        "portal:document_download",
        "fhir:binary_read",
        "fhir:document_reference_type",
        "fhir:document_reference_read",
        "fhir:patient_type",
        "fhir:patient_read",
        "admin:records_patient_changelist",
        "admin:records_patient_change",
        "admin:records_document_changelist",
    } <= seen, seen

    lockdown.engage("test: exposure seen from outside")
    during = walk(scene)

    leaks = [
        (a.who, a.method, a.url, a.status, a.disclosed(secrets))
        for a in during
        if a.disclosed(secrets)
    ]
    assert leaks == [], "\n".join(map(str, leaks))
    # What disclosed before now says "locked": 503, not a 404 that would send the doctor
    # looking for a missing record, nor a 200 with an empty list.
    still_answering = [
        (a.who, a.method, a.url, a.status)
        for a in during
        if (a.who, a.method, a.url) in before and a.status != 503
    ]
    assert still_answering == [], "\n".join(map(str, still_answering))


def test_it_refuses_the_attack_even_without_the_lockdown_middleware(
    scene: Scene, settings: Any
) -> None:
    # The middleware only draws the maintenance page; the refusal is the access decision's.
    # Take the middleware away: every route must still disclose nothing (a 500 where the
    # page would have been), so no test above passes thanks to a URL rule.
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != LOCKDOWN_MIDDLEWARE]
    lockdown.engage("test: exposure seen from outside")
    during = walk(scene)

    secrets = scene.secrets()
    assert [
        (a.who, a.method, a.url, a.disclosed(secrets)) for a in during if a.disclosed(secrets)
    ] == []
    statuses = {
        a.view_name: a.status
        for a in during
        if a.who == "doctor" and a.method == "GET" and a.url.endswith("?")
    }
    assert statuses["portal:document_content"] == 500
    assert statuses["portal:patient_detail"] == 500
    assert statuses["fhir:binary_read"] == 503  # FHIR answers its own OperationOutcome
