"""A NIR only identifies the patient it can belong to: sex, year and month of birth agree."""

from __future__ import annotations

import datetime

from vigie.intake.hprim import nir_contradiction, parse
from vigie.intake.hprim.testing import TODAY, cases, make_nir

# A woman born in March 1988 (the mother) and a man born in November 1962 in Corsica.
MOTHER = make_nir("2880375056112")
CORSICAN = make_nir("162112A004017")


def test_attack_child_results_under_parent_nir_do_not_identify_the_parent() -> None:
    # A lab sends the child's results with the mother's social security number: matching on
    # the number alone would file the child's ferritin in the mother's record.
    child = parse(cases()["nir_of_parent_for_child"][0], today=TODAY).patients[0]
    assert child.nir == MOTHER
    assert nir_contradiction(child.nir, child.birth_date) is not None
    assert nir_contradiction(child.nir, child.birth_date, "F") is not None


def test_attack_nir_of_the_other_sex_does_not_identify_the_patient() -> None:
    # Same birth month and year (twins under one parent's number, or a spouse's NIR): only the
    # sex digit tells them apart.
    assert nir_contradiction(MOTHER, datetime.date(1988, 3, 9), "M") is not None


def test_attack_nir_with_a_mistyped_key_identifies_nobody() -> None:
    wrong_key = MOTHER[:13] + f"{(int(MOTHER[13:]) % 97) + 1:02d}"
    assert nir_contradiction(wrong_key, datetime.date(1988, 3, 9), "F") is not None


def test_it_accepts_a_nir_that_agrees_with_birth_date_and_sex() -> None:
    assert nir_contradiction(MOTHER, datetime.date(1988, 3, 9), "F") is None
    assert nir_contradiction(MOTHER, datetime.date(1988, 3, 9)) is None
    assert nir_contradiction(MOTHER, datetime.date(1988, 3, 9), "U") is None
    assert nir_contradiction(CORSICAN, datetime.date(1962, 11, 30), "M") is None


def test_it_accepts_spaces_in_the_nir() -> None:
    spaced = f"{MOTHER[0]} {MOTHER[1:3]} {MOTHER[3:5]} {MOTHER[5:7]} {MOTHER[7:10]} {MOTHER[10:]}"
    assert nir_contradiction(spaced, datetime.date(1988, 3, 9), "F") is None


def test_it_names_the_year_or_the_month_that_differs() -> None:
    assert "year" in (nir_contradiction(MOTHER, datetime.date(1989, 3, 9)) or "")
    assert "month" in (nir_contradiction(MOTHER, datetime.date(1988, 4, 9)) or "")


def test_it_does_not_judge_an_unknown_month_of_birth() -> None:
    # Month 20-42 or 50-99: the person's birth month was not known when the NIR was issued.
    unknown_month = make_nir("2883375056112")
    assert nir_contradiction(unknown_month, datetime.date(1988, 7, 1), "F") is None
    assert nir_contradiction(unknown_month, datetime.date(1987, 7, 1), "F") is not None


def test_it_checks_the_sex_of_temporary_numbers_too() -> None:
    temporary_man = make_nir("7880375056112")
    assert nir_contradiction(temporary_man, datetime.date(1988, 3, 9), "F") is not None
    assert nir_contradiction(temporary_man, datetime.date(1988, 3, 9), "M") is None


def test_attack_nir_without_its_key_is_not_offered_for_matching() -> None:
    # Thirteen characters carry no key: one mistyped digit would be another person's valid
    # number, and an exact match on it would file the results in a stranger's record.
    parsed = parse(cases()["nir_without_key"][0], today=TODAY)
    assert parsed.patients[0].nir_line == "2850469123045"
    assert parsed.patients[0].nir is None
