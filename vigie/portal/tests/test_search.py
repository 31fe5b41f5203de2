"""Home: my patients, and a search that never leaves my scope."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from vigie.portal.testing import grant, relate
from vigie.records.models import Patient
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db


def home(client, **params):
    return client.get(reverse("portal:home"), params).content.decode()


@pytest.fixture
def mine(doctor):
    patients = [make_patient("DUPONT"), make_patient("DURAND"), make_patient("LEROY")]
    for patient in patients:
        relate(doctor, patient)
    return patients


def test_it_lists_my_patients_only(doctor, signed_in, mine) -> None:
    outsider = make_patient("DUPUIS")
    body = home(signed_in(doctor))
    for patient in mine:
        assert patient.public_id in body
    assert outsider.public_id not in body
    assert reverse("portal:emergency_lookup") in body


def test_it_searches_by_partial_name_within_scope(doctor, signed_in, mine) -> None:
    outsider = make_patient("DUPUIS")
    body = home(signed_in(doctor), q="dup")
    assert mine[0].public_id in body
    assert mine[1].public_id not in body
    assert outsider.public_id not in body


def test_it_searches_by_ipp_ins_and_birth_date(doctor, signed_in, mine) -> None:
    client = signed_in(doctor)
    assert mine[1].public_id in home(client, q=mine[1].ipp.lower())
    assert mine[0].public_id not in home(client, q=mine[1].ipp)
    spaced_ins = " ".join([mine[2].ins[:1], mine[2].ins[1:3], mine[2].ins[3:]])
    body = home(client, q=spaced_ins)
    assert mine[2].public_id in body
    assert mine[0].public_id not in body
    Patient.objects.filter(pk=mine[0].pk).update(birth_date=date(1950, 1, 2))
    body = home(client, birth_date="1950-01-02")
    assert mine[0].public_id in body
    assert mine[1].public_id not in body


def test_it_marks_patients_under_emergency_access(doctor, signed_in) -> None:
    patient = make_patient("URGENT")
    grant(doctor, patient)
    body = home(signed_in(doctor))
    assert patient.public_id in body
    assert "badge emergency" in body


def test_it_explains_to_non_doctors_that_they_read_no_records(admin_user, signed_in) -> None:
    patient = make_patient()
    relate(admin_user, patient)
    response = signed_in(admin_user).get(reverse("portal:home"))
    assert response.status_code == 200
    assert patient.public_id not in response.content.decode()


def test_it_speaks_french_by_default_and_english_on_request(doctor, signed_in) -> None:
    client = signed_in(doctor)
    assert "Mes patients" in home(client)
    english = client.get(reverse("portal:home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "My patients" in english
