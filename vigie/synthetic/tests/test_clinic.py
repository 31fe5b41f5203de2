"""The synthetic clinic: big enough, realistic, laid out for authorisation demos, repeatable."""

import re
from collections import Counter
from datetime import date, timedelta

import pytest

from vigie.records.identifiers import validate_nir
from vigie.synthetic import people
from vigie.synthetic.clinic import KINDS, REFERENCE_DATE, build_clinic

GP, CARDIOLOGIST, RADIOLOGIST = "dr.martin", "dr.lefebvre", "dr.nguyen"


@pytest.fixture(scope="module")
def clinic():
    return build_clinic()


def test_it_has_enough_patients_and_documents(clinic):
    assert len(clinic.patients) >= 50
    assert len(clinic.documents) >= 300
    ipps = [p.ipp for p in clinic.patients]
    assert len(set(ipps)) == len(ipps)
    per_patient = Counter(d.patient_ipp for d in clinic.documents)
    assert set(per_patient) == set(ipps)
    assert min(per_patient.values()) >= 2


def test_it_spreads_documents_across_kinds_with_lab_results_first(clinic):
    counts = Counter(d.kind for d in clinic.documents)
    assert set(counts) == set(KINDS)
    assert counts.most_common(1)[0][0] == "lab_result"


def test_it_gives_three_doctors_different_partly_overlapping_patients(clinic):
    assert {d.username for d in clinic.doctors} == {GP, CARDIOLOGIST, RADIOLOGIST}
    gp, cardio, radio = (clinic.patients_of(u) for u in (GP, CARDIOLOGIST, RADIOLOGIST))
    assert (len(gp), len(cardio), len(radio)) == (25, 15, 15)
    assert len(gp & cardio) == 8
    for one, other in ((gp, cardio), (gp, radio), (cardio, radio)):
        # Partly overlapping: they share patients, and each has patients the other has not.
        assert one & other
        assert one - other
        assert other - one


def test_it_leaves_some_patients_without_any_relationship(clinic):
    related = {r.patient_ipp for r in clinic.relationships}
    assert len({p.ipp for p in clinic.patients} - related) >= 5


def test_it_has_a_few_relationships_that_have_ended(clinic):
    ended = [r for r in clinic.relationships if r.valid_until is not None]
    assert ended
    for relationship in ended:
        assert relationship.valid_from < relationship.valid_until < REFERENCE_DATE
        assert not relationship.active_on(REFERENCE_DATE)
        assert relationship.patient_ipp not in clinic.patients_of(relationship.doctor_username)


def test_it_uses_the_three_roles_on_known_doctors_and_patients(clinic):
    ipps = {p.ipp for p in clinic.patients}
    doctors = {d.username for d in clinic.doctors}
    assert {r.role for r in clinic.relationships} == {"treating", "referring", "consulting"}
    for relationship in clinic.relationships:
        assert relationship.patient_ipp in ipps
        assert relationship.doctor_username in doctors
    pairs = [(r.doctor_username, r.patient_ipp) for r in clinic.relationships]
    assert len(pairs) == len(set(pairs))


def test_it_issues_valid_ins_consistent_with_sex_and_birth(clinic):
    with_ins = [p for p in clinic.patients if p.ins is not None]
    assert 0.7 <= len(with_ins) / len(clinic.patients) < 1
    for patient in with_ins:
        assert validate_nir(patient.ins) == patient.ins
        assert patient.ins[0] == ("2" if patient.sex == "F" else "1")
        assert patient.ins[1:5] == patient.birth_date.strftime("%y%m")
    assert len({p.ins for p in with_ins}) == len(with_ins)


def test_it_gives_plausible_identities_ages_and_addresses(clinic):
    ages = [p.age_on(REFERENCE_DATE) for p in clinic.patients]
    assert min(ages) >= 1
    assert max(ages) <= 95
    assert sum(age >= 18 for age in ages) / len(ages) >= 0.7
    for patient in clinic.patients:
        assert patient.sex in ("F", "M")
        assert re.fullmatch(r"IPP\d{7}", patient.ipp)
        assert patient.family_name
        assert patient.given_names
        assert re.fullmatch(r"\d+( bis)? .+", patient.address_line)
        assert re.fullmatch(r"69\d{3}", patient.postal_code)
        assert patient.city


def test_it_dates_documents_in_the_three_years_before_the_reference_date(clinic):
    assert date(2026, 11, 29) > REFERENCE_DATE
    earliest = REFERENCE_DATE - timedelta(days=3 * 366)
    for document in clinic.documents:
        assert earliest <= document.clinical_date <= REFERENCE_DATE
        assert clinic.patient(document.patient_ipp).age_on(document.clinical_date) >= 1


def test_it_signs_documents_with_plausible_authors(clinic):
    radiologists = {p.name for p in people.OTHER_RADIOLOGISTS} | {"Dr Hélène Nguyen"}
    biologists = {p.name for p in people.BIOLOGISTS}
    for document in clinic.documents:
        assert document.title
        assert document.source_system in {"LABO-BIOMED", "PACS-RADIO", "DPI-CLINIQUE", "MSSANTE"}
        if document.kind == "lab_result":
            assert document.author in biologists
            assert document.source_system == "LABO-BIOMED"
        elif document.kind == "imaging_report":
            assert document.author in radiologists
            assert document.source_system == "PACS-RADIO"
        if document.author == "Dr Hélène Nguyen":
            # Our radiologist only reads exams of patients she follows, so she can open them.
            assert document.patient_ipp in clinic.patients_of(RADIOLOGIST)


def test_it_numbers_documents_uniquely_per_source(clinic):
    ids = [(d.source_system, d.external_id) for d in clinic.documents]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Z]{3}-20\d\d-\d{5}", d.external_id) for d in clinic.documents)


def test_it_uses_ascii_lowercase_usernames(clinic):
    assert clinic.admins == ("admin.it",)
    assert len(clinic.auditors) == 1
    for username in [d.username for d in clinic.doctors] + [*clinic.admins, *clinic.auditors]:
        assert re.fullmatch(r"[a-z][a-z0-9._]*", username)


def test_it_builds_the_same_clinic_for_the_same_seed(clinic):
    assert build_clinic() == clinic
    other = build_clinic(seed=7)
    assert other != clinic
    assert [p.family_name for p in other.patients] != [p.family_name for p in clinic.patients]


def test_it_scales_to_other_sizes():
    small = build_clinic(seed=3, patients=20, documents=55)
    assert len(small.patients) == 20
    assert len(small.documents) == 55
    assert min(Counter(d.patient_ipp for d in small.documents).values()) >= 2
    assert all(small.patients_of(d.username) for d in small.doctors)


@pytest.mark.parametrize(("patients", "documents"), [(5, 20), (30, 50)])
def test_it_refuses_a_clinic_too_small_to_lay_out(patients, documents):
    with pytest.raises(ValueError, match="at least"):
        build_clinic(patients=patients, documents=documents)
