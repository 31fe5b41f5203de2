"""The doctor's search box in real Chromium, on the database the run uses (this file is not
sqlite_only: the PostgreSQL pass runs it against a live server on PostgreSQL).

What a physician types: a name without its accents or in another case, given name first, an
IPP without its prefix or zeros, a birth date in three forms — each finds the same patient,
and only among the doctor's own patients.
"""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from playwright.sync_api import Page

from tests.browser.live import Live
from tests.browser.pages import Shot, log_in

pytestmark = [pytest.mark.slow]


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _found(page: Page, live: Live, typed: str) -> list[str]:
    page.goto(live.base_url + "/")
    page.fill("input[name=q]", typed)
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state()
    hrefs = page.locator("table.listing a[href^='/patients/']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    return sorted({h.split("/")[2] for h in hrefs})


def test_the_doctors_search_finds_a_patient_however_it_is_typed(
    page: Page, live: Live, shot: Shot
) -> None:
    installation = live.installation
    doctor = installation.login("doctor", 1)
    facts = installation.facts
    mine = set(facts["scope"][doctor.username])
    patient = next(p for p in facts["patients"] if p["public_id"] in mine)
    stranger = next(p for p in facts["patients"] if p["public_id"] not in mine)
    log_in(page, live, doctor)
    born = date.fromisoformat(patient["birth_date"])
    family, given = patient["family_name"], patient["given_names"].split()[0]
    number = str(int(patient["ipp"].lstrip("IP")))
    typed = {
        "name without accents, lower case": _plain(family),
        "given name first": f"{given} {family.upper()}",
        "IPP without prefix or zeros": number,
        "IPP as stored": patient["ipp"],
        "date dd/mm/yyyy": born.strftime("%d/%m/%Y"),
        "date ddmmyyyy": born.strftime("%d%m%Y"),
        "date ISO": born.isoformat(),
    }
    missed = {
        why: text
        for why, text in typed.items()
        if patient["public_id"] not in _found(page, live, text)
    }
    shot("search")
    assert missed == {}
    # Within scope only: another doctor's patient, typed exactly, is not found.
    assert stranger["public_id"] not in _found(page, live, stranger["family_name"])
    assert stranger["public_id"] not in _found(page, live, stranger["ipp"])
