"""Reading documents in a real browser: the viewer and its PDF, and break-the-glass."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.live import Live
from tests.browser.pages import Shot, fetch_in_page, log_in, path_of

# What a browser or an outsider sees does not depend on the database engine: the SQLite pass
# runs these once (the PostgreSQL pass serves the same demo in test_audit_through_server).
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def test_it_opens_a_patients_pdf(page: Page, live: Live, shot: Shot) -> None:
    doctor = live.installation.login("doctor", 1)
    log_in(page, live, doctor)
    page.click("table.listing a[href^='/patients/']")
    page.wait_for_load_state()
    assert path_of(page).startswith("/patients/")
    shot("patient")
    link = page.locator("table.timeline a[href^='/documents/']").first
    title = link.inner_text().strip()
    link.click()
    page.wait_for_load_state()
    assert path_of(page).startswith("/documents/")
    expect(page.locator("main h1")).to_have_text(title)
    frame = page.locator("iframe.viewer-frame")
    expect(frame).to_have_count(1)
    content_url = frame.get_attribute("src")
    assert content_url is not None
    assert content_url.endswith("/content")
    shot("viewer")
    # Headless Chromium may not render PDFs: check the bytes the viewer gets instead.
    fetched = fetch_in_page(page, content_url)
    assert fetched["status"] == 200
    assert fetched["type"].startswith("application/pdf")
    assert fetched["head"] == "%PDF-"
    assert fetched["size"] > 1000
    with page.expect_download() as download_info:
        page.click("main a[href$='/download']")
    download = download_info.value
    path = download.path()
    assert path is not None
    assert path.read_bytes()[:5] == b"%PDF-"


def test_it_breaks_the_glass_for_a_patient_outside_the_doctors_care(
    page: Page, live: Live, shot: Shot
) -> None:
    installation = live.installation
    # A doctor with no care relationship at all: every patient is outside their care.
    doctor = installation.create_doctor("dr.urgences")
    patient = next(p for p in installation.facts["patients"] if p["ins"])
    log_in(page, live, doctor)
    # Out of scope, the patient's page does not exist for this doctor.
    response = page.goto(f"{live.base_url}/patients/{patient['public_id']}/")
    assert response is not None
    assert response.status == 404
    page.goto(live.base_url + "/")
    page.click("main a[href='/emergency/']")
    page.wait_for_load_state()
    assert path_of(page) == "/emergency/"
    page.fill("#id_ins", patient["ins"])
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == "/emergency/confirm", page.url
    expect(page.locator("#patient-name")).to_contain_text(patient["family_name"].upper())
    page.select_option("#id_reason", "vital_emergency")
    page.fill(
        "#id_justification",
        "Patient admis inconscient aux urgences, traitement en cours inconnu.",
    )
    assert doctor.totp_secret is not None
    page.fill("#id_code", installation.totp(doctor.totp_secret))
    shot("grant-form")
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == f"/patients/{patient['public_id']}/", page.url
    expect(page.locator(".emergency-banner")).to_be_visible()
    expect(page.locator("#patient-name")).to_contain_text(patient["family_name"].upper())
    shot("emergency")
