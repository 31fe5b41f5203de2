"""The physician's day in real Chromium (issue 21 parts 1, 3 and 7): the results inbox and
its read state, the viewer's previous / next and shortcuts, and the phone layout measured.

Each test gets a doctor of its own, put in care of a few demo patients, so that what one
test reads does not change what another finds new.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.browser.axe import serious_violations
from tests.browser.live import Installation, Live, Login
from tests.browser.pages import Shot, log_in, path_of

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

PHONE: ViewportSize = {"width": 390, "height": 844}


def doctor_in_care_of(installation: Installation, patients: int) -> tuple[Login, list[str]]:
    """A new doctor in care of the `patients` demo patients with the most documents."""
    username = f"dr.inbox{secrets.token_hex(3)}"
    login = installation.create_doctor(username)
    per_patient: dict[str, int] = {}
    for document in installation.facts["documents"]:
        per_patient[document["patient"]] = per_patient.get(document["patient"], 0) + 1
    chosen = sorted(per_patient, key=lambda p: (-per_patient[p], p))[:patients]
    installation.shell(
        f"""
from datetime import timedelta
from django.utils import timezone
from vigie.accounts.models import User
from vigie.records.models import CareRelationship, Patient
doctor = User.objects.get(username={username!r})
for public_id in {chosen!r}:
    CareRelationship.objects.create(
        doctor=doctor, patient=Patient.objects.get(public_id=public_id), role="treating",
        valid_from=timezone.now() - timedelta(days=1),
    )
"""
    )
    return login, chosen


def documents_of(installation: Installation, public_ids: list[str]) -> int:
    return sum(1 for d in installation.facts["documents"] if d["patient"] in public_ids)


def header_count(page: Page) -> int:
    badge = page.locator("header .inbox-link .badge")
    if badge.count() == 0:
        return 0
    return int(badge.inner_text().split()[0])


def wait_for_count(page: Page, live: Live, expected: int) -> None:
    """Reload the inbox until the header says `expected` (the PDF frame's read may still be
    on its way when the test moves on)."""
    deadline = time.monotonic() + 10
    while True:
        page.goto(live.base_url + "/inbox/")
        if header_count(page) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert header_count(page) == expected


def test_the_inbox_lists_what_the_doctor_has_not_opened(page: Page, live: Live, shot: Shot) -> None:
    doctor, patients = doctor_in_care_of(live.installation, 2)
    total = documents_of(live.installation, patients)
    log_in(page, live, doctor)
    assert header_count(page) == total
    # The patient list shows each patient's count.
    counts = page.locator("table.listing tbody .badge.count").all_inner_texts()
    assert sum(int(text.split()[0]) for text in counts) == total
    shot("home")
    page.click("header .inbox-link")
    page.wait_for_load_state()
    assert path_of(page) == "/inbox/"
    expect(page.locator("table.inbox tbody tr")).to_have_count(min(total, 50))
    assert serious_violations(page) == []
    shot("inbox")

    # Opening a document (the viewer loads it through the door) takes it out of the inbox.
    first = page.locator("table.inbox tbody tr").first.locator("a.doc-link")
    opened = first.get_attribute("href")
    first.click()
    page.wait_for_load_state()
    assert path_of(page).startswith("/documents/")
    wait_for_count(page, live, total - 1)
    assert page.locator(f"table.inbox a[href='{opened}']").count() == 0

    # Reloading pages changes nothing; "mark as read" on one row takes that one out.
    page.reload()
    assert header_count(page) == total - 1
    row = page.locator("table.inbox tbody tr").first
    marked = row.locator("a.doc-link").get_attribute("href")
    row.locator("button").click()
    page.wait_for_load_state()
    assert path_of(page) == "/inbox/"
    expect(page.locator(".messages")).to_contain_text("marqué comme lu")
    assert header_count(page) == total - 2
    assert page.locator(f"table.inbox a[href='{marked}']").count() == 0

    # "Mark all as read" for a patient empties that patient's part of the inbox.
    patients_left = page.locator(".inbox-patients li")
    expect(patients_left).to_have_count(2)
    second_patient_count = int(patients_left.nth(1).locator(".badge.count").inner_text().split()[0])
    patients_left.nth(1).locator("button").click()
    page.wait_for_load_state()
    expect(page.locator(".messages")).to_contain_text("marqués comme lus")
    assert header_count(page) == total - 2 - second_patient_count
    expect(page.locator(".inbox-patients li")).to_have_count(1)
    shot("after-marking")


def test_the_inbox_marks_abnormal_lab_results_in_words(page: Page, live: Live, shot: Shot) -> None:
    username = f"dr.flags{secrets.token_hex(3)}"
    doctor = live.installation.create_doctor(username)
    # In care of the demo patients who have lab results (the demo lab flags H and L only).
    live.installation.shell(
        f"""
from datetime import timedelta
from django.utils import timezone
from vigie.accounts.models import User
from vigie.records.models import CareRelationship, Patient
doctor = User.objects.get(username={username!r})
for patient in Patient.objects.filter(documents__kind="lab_result").distinct()[:3]:
    CareRelationship.objects.create(
        doctor=doctor, patient=patient, role="treating",
        valid_from=timezone.now() - timedelta(days=1),
    )
"""
    )
    log_in(page, live, doctor)
    page.goto(live.base_url + "/inbox/")
    markers = page.locator("table.inbox .result-marker")
    expect(markers.first).to_be_visible()
    # Words and a symbol, not colour alone.
    assert set(markers.all_inner_texts()) <= {"! anormal", "‼ critique"}
    assert serious_violations(page) == []
    shot("inbox-markers")


def _open_first_document_of_filtered_timeline(
    page: Page, live: Live, patient: str, shot: Shot
) -> str:
    page.goto(f"{live.base_url}/patients/{patient}/")
    page.click(".filter-panel summary")
    page.check("input[name=kind][value=lab_result]")
    page.check("input[name=kind][value=imaging_report]")
    page.select_option("#id_sort", "date")
    page.click(".filter-panel button[type=submit]")
    page.wait_for_load_state()
    assert "kind=lab_result" in page.url
    assert serious_violations(page) == []
    shot("timeline-filtered")
    kinds = page.locator("table.timeline tbody td:nth-child(3)").all_inner_texts()
    assert kinds
    assert set(kinds) <= {"Résultat de biologie", "Compte rendu d'imagerie"}
    rows = page.locator("table.timeline a.doc-link")
    first_href = rows.first.get_attribute("href")
    assert first_href is not None
    assert "kind=lab_result" in first_href
    rows.first.click()
    page.wait_for_load_state()
    return str(first_href)


def test_the_viewer_steps_through_the_filtered_timeline_by_keyboard(
    page: Page, live: Live, shot: Shot
) -> None:
    doctor, patients = doctor_in_care_of(live.installation, 1)
    log_in(page, live, doctor)
    _open_first_document_of_filtered_timeline(page, live, patients[0], shot)
    first_path = path_of(page)
    expect(page.locator(".position")).to_contain_text("1 sur")
    total = int(page.locator(".position").inner_text().split()[-1])
    assert total >= 2, "the demo patient needs two lab or imaging documents"
    # The shortcuts are on the page, and the details panel beside the document is open.
    expect(page.locator(".shortcuts")).to_be_visible()
    expect(page.locator("[data-shortcut=print]")).to_be_visible()
    assert serious_violations(page) == []
    shot("viewer")

    with page.expect_navigation():
        page.keyboard.press("j")
    assert path_of(page) != first_path
    assert "kind=lab_result" in page.url  # the filter travels along
    expect(page.locator(".position")).to_contain_text(f"2 sur {total}")
    with page.expect_navigation():
        page.keyboard.press("ArrowLeft")
    assert path_of(page) == first_path
    page.click("a[rel=next]")
    page.wait_for_load_state()
    expect(page.locator(".position")).to_contain_text(f"2 sur {total}")
    with page.expect_navigation():
        page.keyboard.press("Escape")
    assert path_of(page) == f"/patients/{patients[0]}/"
    assert "sort=date" in page.url


def _layout(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """() => {
            const visible = (el) => {
                const r = el.getBoundingClientRect();
                const style = getComputedStyle(el);
                // Off-screen until focused (the skip link) is not a target on screen.
                return r.width > 0 && r.height > 0 && r.right > 0 && style.visibility !== 'hidden';
            };
            const controls = [...document.querySelectorAll(
                'a[href], button, input:not([type=hidden]), select, textarea, summary')]
                .filter(visible);
            const small = controls
                .map(el => ({el, r: el.getBoundingClientRect()}))
                .filter(({r}) => r.height < 24 || r.width < 24)
                .map(({el, r}) => `${el.tagName} ${el.textContent.trim().slice(0, 30)} ${Math.round(r.width)}x${Math.round(r.height)}`);
            const smallText = [...document.querySelectorAll('input:not([type=hidden]):not([type=checkbox]), select, textarea')]
                .filter(visible)
                .filter(el => parseFloat(getComputedStyle(el).fontSize) < 16)
                .map(el => `${el.name} ${getComputedStyle(el).fontSize}`);
            const firstDoc = document.querySelector('a.doc-link');
            return {
                scrollWidth: document.scrollingElement.scrollWidth,
                viewport: window.innerWidth,
                small, smallText,
                firstDocTop: firstDoc ? firstDoc.getBoundingClientRect().top + window.scrollY : null,
                firstDocBottom: firstDoc ? firstDoc.getBoundingClientRect().bottom + window.scrollY : null,
            };
        }"""
    )
    return result


def test_on_a_phone_the_first_document_is_above_the_fold(
    page: Page, live: Live, shot: Shot
) -> None:
    page.set_viewport_size(PHONE)
    doctor, patients = doctor_in_care_of(live.installation, 2)
    log_in(page, live, doctor)
    measured = {"home": _layout(page)}
    shot("phone-home")
    page.goto(live.base_url + "/inbox/")
    measured["inbox"] = _layout(page)
    shot("phone-inbox")
    found = {"inbox": serious_violations(page)}
    page.goto(f"{live.base_url}/patients/{patients[0]}/")
    measured["patient"] = _layout(page)
    shot("phone-patient")
    found["patient"] = serious_violations(page)
    page.click(".filter-panel summary")
    measured["patient-filters"] = _layout(page)
    shot("phone-patient-filters")
    page.locator("a.doc-link").first.click()
    page.wait_for_load_state()
    measured["viewer"] = _layout(page)
    found["viewer"] = serious_violations(page)
    page.goto(live.base_url + "/emergency/")
    measured["emergency"] = _layout(page)
    found["emergency"] = serious_violations(page)
    page.go_back()
    # On a phone the PDF opens in the browser's own viewer: the button is there, on screen.
    open_pdf = page.locator("[data-shortcut=open]")
    expect(open_pdf).to_be_visible()
    box = open_pdf.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= PHONE["height"]
    assert (open_pdf.get_attribute("href") or "").endswith("/content")
    shot("phone-viewer")

    for name in ("inbox", "patient"):
        top = measured[name]["firstDocBottom"]
        assert top is not None, name
        assert top <= PHONE["height"], (name, measured[name])
    for name, layout in measured.items():
        assert layout["scrollWidth"] <= layout["viewport"] == PHONE["width"], (name, layout)
        assert layout["small"] == [], (name, layout["small"])
        assert layout["smallText"] == [], (name, layout["smallText"])
    assert {name: v for name, v in found.items() if v} == {}
