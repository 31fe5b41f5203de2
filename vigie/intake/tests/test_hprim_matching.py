"""An HPRIM header identifies its patient exactly only through a NIR that can be theirs."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from vigie.intake.hprim import PatientReport, parse
from vigie.intake.hprim.matching import matchable_nir, sender_for
from vigie.intake.hprim.testing import TODAY, Report, cases, hprim, make_nir
from vigie.records.models import Patient
from vigie.records.receive import match_patient

pytestmark = pytest.mark.django_db

MOTHER = make_nir("2880375056112")


def _mother() -> Patient:
    return Patient.objects.create(
        ipp="IPP-MOTHER",
        ins=MOTHER,
        family_name="ROUSSEAU",
        given_names="Claire",
        birth_date=datetime.date(1988, 3, 9),
        sex="F",
    )


def _report(family_name: str = "MARTIN", given_name: str = "Hélène", *, born: str) -> PatientReport:
    report = Report(nir=MOTHER, family_name=family_name, given_name=given_name, birth_date=born)
    return parse(hprim([report]), today=TODAY).patients[0]


def test_attack_child_file_under_parent_nir_goes_to_reconciliation_not_to_the_parent() -> None:
    mother = _mother()
    child = parse(cases()["nir_of_parent_for_child"][0], today=TODAY).patients[0]
    assert child.nir == mother.ins
    sender = sender_for(child)
    assert sender.ins is None
    match = match_patient(sender)
    assert match.patient is None
    assert sender.demographics()["birth_date"] == "2019-06-14"


def test_attack_spouse_nir_with_the_same_birth_month_does_not_match_the_spouse() -> None:
    # Born the same month and year as the NIR's holder: the NIR alone cannot tell them
    # apart; the holder's birth date here can.
    _mother()
    sister_in_law = _report(family_name="ROUSSEAU", given_name="Inès", born="21/03/1988")
    assert matchable_nir(sister_in_law) is None
    assert match_patient(sender_for(sister_in_law)).patient is None


def test_attack_nir_of_the_other_sex_does_not_match_its_holder() -> None:
    # The holder's record says male although the NIR's sex digit says female (a record
    # created from a mistyped INS): the file cannot be trusted to be theirs.
    holder = _mother()
    Patient.objects.filter(pk=holder.pk).update(sex="M")
    report = _report(family_name="ROUSSEAU", given_name="Claire", born="09/03/1988")
    assert matchable_nir(report) is None


def test_it_matches_exactly_when_nir_birth_date_and_sex_agree() -> None:
    mother = _mother()
    report = _report(family_name="ROUSSEAU", given_name="Claire", born="09/03/1988")
    assert match_patient(sender_for(report)).patient == mother


def test_it_offers_a_consistent_nir_nobody_holds_yet() -> None:
    report = _report(family_name="ROUSSEAU", given_name="Claire", born="09/03/1988")
    assert matchable_nir(report) == MOTHER
    assert match_patient(sender_for(report)).patient is None


def test_it_never_offers_a_nir_without_its_key() -> None:
    report = replace(_report(born="09/03/1988"), nir=None, nir_line=MOTHER[:13])
    assert sender_for(report).ins is None
