"""The DPO's home and searches: tools on the home page, patients and users found by a search
field (never a typed URL), alerts that link to their report, counts that say what they name."""

from __future__ import annotations

import html

import pytest
from django.test import Client

from vigie.accounts.models import User
from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.portal.testing import current_code
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Admitted unconscious after a road accident, no relative reachable."


def look_up(client: Client, ins: str | None) -> None:
    client.post("/emergency/", {"ins": ins or "", "ipp": "", "birth_date": ""})


def break_glass(client: Client, doctor: User) -> int:
    data = {"reason": "vital_emergency", "justification": JUSTIFICATION}
    response = client.post("/emergency/confirm", {**data, "code": current_code(doctor)})
    return int(response.status_code)


@pytest.fixture
def dpo(auditor: User, signed_in) -> Client:
    client: Client = signed_in(auditor)
    return client


def test_it_gives_the_dpo_a_home_with_its_tools(dpo: Client) -> None:
    page = dpo.get("/").content.decode()
    for link in (
        'href="/audit/"',
        'action="/dpo/patients/"',
        'action="/dpo/users/"',
        'href="/alerts/"',
    ):
        assert link in page, link
    # The same header as everyone: the user's name and a logout button.
    assert "dpo" in page
    assert 'action="/accounts/logout/"' in page
    assert "Aucun dossier patient pour ce compte" not in page


def test_it_finds_a_patient_by_name_without_accents_and_links_to_the_report(dpo: Client) -> None:
    patient = make_patient("MARÉCHAL")
    page = dpo.get("/dpo/patients/", {"q": "marechal"}).content.decode()
    assert "MARÉCHAL" in page
    assert f'href="/audit/patients/{patient.ipp}/"' in page
    searched = AuditEvent.objects.get(action="audit.patient_search")
    assert searched.actor_username == "dpo"
    assert searched.extra["results"] == 1


def test_it_finds_a_user_for_the_activity_report(dpo: Client, doctor: User) -> None:
    page = dpo.get("/dpo/users/", {"q": "house"}).content.decode()
    assert f'href="/audit/actors/{doctor.username}/"' in page


@pytest.mark.parametrize("url", ["/dpo/patients/?q=durand", "/dpo/users/?q=house"])
def test_other_roles_get_404_on_the_dpo_searches(
    url: str, doctor: User, admin_user: User, signed_in
) -> None:
    make_patient("DURAND")
    for user in (doctor, admin_user):
        response = signed_in(user).get(url)
        assert response.status_code == 404
        assert b"DURAND" not in response.content


def test_one_emergency_access_counts_as_one(doctor: User, signed_in, dpo: Client) -> None:
    stranger = make_patient("INCONNU")
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    assert break_glass(client, doctor) == 302
    # The lookup, the grant and the alert are three traces of one emergency access.
    assert AuditEvent.objects.filter(action__startswith="emergency.").count() >= 2
    home = html.unescape(dpo.get("/").content.decode())
    assert "1 accès d'urgence accordé en 14 jours" in home
    dashboard = html.unescape(dpo.get("/audit/").content.decode())
    assert "Accès d'urgence accordés : 1" in dashboard


def test_the_emergency_alert_is_in_french_and_links_to_the_patients_report(
    doctor: User, signed_in, dpo: Client
) -> None:
    stranger = make_patient("INCONNU")
    client = signed_in(doctor)
    look_up(client, ins=stranger.ins)
    break_glass(client, doctor)
    alert = Alert.objects.get(kind="emergency.access")
    for url in ("/", "/alerts/", "/audit/"):
        page = html.unescape(dpo.get(url).content.decode())
        assert f"Accès d'urgence de {doctor.username} au patient {stranger.ipp}" in page
        assert f'href="/audit/patients/{stranger.ipp}/"' in page
        assert alert.summary not in page  # the stored English summary is for e-mails
    report = html.unescape(dpo.get(f"/audit/patients/{stranger.ipp}/").content.decode())
    assert "Accès d'urgence accordé" in report
    assert "Urgence vitale" in report  # the reason chosen from the list, translated
    assert "Admitted unconscious" in report  # and the justification, as typed
