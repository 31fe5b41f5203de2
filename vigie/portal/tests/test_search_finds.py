"""Search that finds: accents, case and spacing do not count, names in either order, the IPP
with or without its prefix, a birth date typed three ways, pages past the first hundred,
and never a patient outside the doctor's scope."""

from __future__ import annotations

import importlib
from datetime import date

import pytest
from django.apps import apps
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from vigie.lib.folding import fold, fold_compact
from vigie.portal.services import PAGE_SIZE, parse_birth_date, search_patients
from vigie.portal.testing import relate
from vigie.records.models import Patient
from vigie.records.testing import make_patient

LOOKUP = "/emergency/"


def home(client, **params):
    return client.get(reverse("portal:home"), params).content.decode()


def patient(family: str, given: str = "Camille", **fields) -> Patient:
    row = make_patient(family)
    row.given_names = given
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


@pytest.fixture
def cared_for(doctor):
    def make(family: str, given: str = "Camille", **fields) -> Patient:
        row = patient(family, given, **fields)
        relate(doctor, row)
        return row

    return make


@pytest.mark.django_db
def test_it_ignores_accents_and_case(doctor, signed_in, cared_for) -> None:
    marechal = cared_for("MARÉCHAL", "Zoé")
    begue = cared_for("BÈGUE", "Hélène")
    other = cared_for("MARTIN")
    client = signed_in(doctor)
    body = home(client, q="marechal")
    assert marechal.public_id in body
    assert other.public_id not in body
    for typed in ["BÈGUE", "begue", "Bègue", "BEGUE", "bègue"]:
        body = home(client, q=typed)
        assert begue.public_id in body, typed
        assert marechal.public_id not in body, typed
    assert marechal.public_id in home(client, q="ZOE")


@pytest.mark.django_db
def test_it_ignores_spacing_hyphens_and_apostrophes(doctor, signed_in, cared_for) -> None:
    le_gall = cared_for("LE GALL", "Jean-Pierre")
    oneil = cared_for("O'NEIL", "Anne")
    client = signed_in(doctor)
    for typed in ["legall", "le gall", "Le-Gall", "  LE   GALL ", "jeanpierre", "jean pierre"]:
        body = home(client, q=typed)
        assert le_gall.public_id in body, typed
        assert oneil.public_id not in body, typed
    assert oneil.public_id in home(client, q="oneil")
    assert oneil.public_id in home(client, q="o'neil anne")


@pytest.mark.django_db
def test_it_takes_family_and_given_names_in_either_order(doctor, signed_in, cared_for) -> None:
    wanted = cared_for("DUPONT", "Éloïse")
    namesake = cared_for("DUPONT", "Marc")
    client = signed_in(doctor)
    for typed in ["dupont eloise", "Éloïse Dupont", "elo dup"]:
        body = home(client, q=typed)
        assert wanted.public_id in body, typed
        assert namesake.public_id not in body, typed


@pytest.mark.django_db
def test_it_finds_an_ipp_with_or_without_its_prefix(doctor, signed_in, cared_for) -> None:
    wanted = cared_for("DURAND", ipp="IPP0000123")
    neighbour = cared_for("DURAND", ipp="IPP0001123")
    client = signed_in(doctor)
    for typed in ["IPP0000123", "ipp0000123", "0000123", "123", "IPP 0000123", "ipp-123"]:
        body = home(client, q=typed)
        assert wanted.public_id in body, typed
        assert neighbour.public_id not in body, typed
    # Another prefix typed is another IPP.
    assert wanted.public_id not in home(client, q="XYZ0000123")


@pytest.mark.django_db
def test_it_reads_a_birth_date_typed_three_ways(doctor, signed_in, cared_for) -> None:
    wanted = cared_for("DURAND", birth_date=date(1984, 3, 15))
    other = cared_for("DURAND", birth_date=date(1984, 3, 16))
    client = signed_in(doctor)
    for typed in ["15/03/1984", "15031984", "1984-03-15", "durand 15/03/1984"]:
        body = home(client, q=typed)
        assert wanted.public_id in body, typed
        assert other.public_id not in body, typed
    assert wanted.public_id not in home(client, q="martin 15/03/1984")


@pytest.mark.django_db
def test_it_pages_past_a_hundred_patients(doctor, signed_in, cared_for) -> None:
    total = 2 * PAGE_SIZE + 21  # 121: three pages, the last one partial
    everyone = {cared_for(f"PATIENT{n:03d}").public_id for n in range(total)}
    client = signed_in(doctor)
    seen: list[str] = []
    for number in (1, 2, 3):
        body = home(client, page=number)
        seen += [public_id for public_id in everyone if public_id in body]
    assert len(seen) == len(set(seen)) == total
    first = home(client)
    assert "page=2" in first
    # French by default, like the rest of the portal.
    assert f"Page 1 sur 3 ({total} patients)" in first
    assert "Page suivante" in first


@pytest.mark.django_db
def test_its_page_links_keep_the_search(doctor, signed_in, cared_for) -> None:
    for n in range(PAGE_SIZE + 1):
        cared_for(f"BÈGUE{n:03d}")
    body = home(signed_in(doctor), q="begue")
    assert "q=begue&amp;page=2" in body


@pytest.mark.django_db
def test_attack_folded_search_reaches_a_patient_outside_scope(doctor, signed_in, cared_for) -> None:
    # Every new way of matching (folded name, IPP without prefix, date in the box) must
    # stay within the scope: a namesake outside it, or one whose care ended, never shows.
    mine = cared_for("MARÉCHAL", "Zoé", ipp="IPP0000777", birth_date=date(1984, 3, 15))
    outsider = patient("MARÉCHAL", "Zoé", ipp="IPP0000778", birth_date=date(1984, 3, 15))
    former = patient("MARÉCHAL", "Zoé", ipp="IPP0000779", birth_date=date(1984, 3, 15))
    relate(doctor, former, expired=True)
    client = signed_in(doctor)
    queries = ["marechal", "zoe marechal", "15031984", "15/03/1984", "1984-03-15", "0000778"]
    queries += ["778", "IPP 0000779", str(outsider.ins), str(former.ins), "", "m", "a"]
    for typed in queries:
        body = home(client, q=typed)
        assert outsider.public_id not in body, typed
        assert former.public_id not in body, typed
        assert outsider.ipp not in body, typed
    assert mine.public_id in home(client, q="marechal")
    scoped = search_patients(doctor, q="marechal")
    assert list(scoped) == [mine]


@pytest.mark.django_db
def test_attack_break_the_glass_lookup_by_folded_or_partial_identifiers(doctor, signed_in) -> None:
    # Outside the scope, finding a patient stays exact: none of the search's conveniences.
    stranger = patient("MARÉCHAL", "Zoé", ipp="IPP0000555", birth_date=date(1984, 3, 15))
    client = signed_in(doctor)
    for ipp in ["0000555", "555", "ipp0000555", "IPP 0000555", "marechal"]:
        response = client.post(LOOKUP, {"ins": "", "ipp": ipp, "birth_date": "1984-03-15"})
        assert response.status_code == 200, ipp
        assert stranger.public_id not in response.content.decode(), ipp
    exact = client.post(LOOKUP, {"ins": "", "ipp": stranger.ipp, "birth_date": "1984-03-15"})
    assert exact.status_code == 302


@pytest.mark.django_db
def test_it_keeps_the_key_in_step_with_the_name(doctor) -> None:
    row = patient("DUPONT", "Anne")
    assert row.search_key == "dupont anne"
    row.family_name = "Bègue-Maréchal"
    row.save(update_fields=["family_name"])
    assert Patient.objects.get(pk=row.pk).search_key == "begue marechal anne"


@pytest.mark.django_db
def test_its_migration_fills_the_key_of_existing_rows() -> None:
    row = patient("CŒUR", "Zoé")
    Patient.objects.filter(pk=row.pk).update(search_key="")
    migration = importlib.import_module("vigie.records.migrations.0005_patient_search_key")
    migration.fill_search_keys(apps, None)
    assert Patient.objects.get(pk=row.pk).search_key == "coeur zoe"


def test_fold_examples() -> None:
    assert fold("MARÉCHAL") == fold("marechal") == "marechal"
    assert fold("BÈGUE") == fold("begue") == fold("Bègue")
    assert fold("  Le   Gall-d'Œuf ") == "le gall d oeuf"
    assert fold_compact("Le Gall") == fold_compact("LEGALL") == "legall"


@given(st.text())
def test_fold_yields_lower_ascii_words_and_is_idempotent(text: str) -> None:
    folded = fold(text)
    assert set(folded) <= set("abcdefghijklmnopqrstuvwxyz0123456789 ")
    assert "  " not in folded
    assert folded == folded.strip()
    assert fold(folded) == folded
    assert fold(text.upper()) == fold(text.lower()) or not text.isascii()


@given(st.dates(min_value=date(1000, 1, 1)))
def test_parse_birth_date_reads_the_three_forms(day: date) -> None:
    for typed in [day.strftime("%d/%m/%Y"), day.strftime("%d%m%Y"), day.isoformat()]:
        assert parse_birth_date(typed) == [day], typed


@given(st.text())
def test_parse_birth_date_never_raises(text: str) -> None:
    for parsed in parse_birth_date(text):
        assert isinstance(parsed, date)
