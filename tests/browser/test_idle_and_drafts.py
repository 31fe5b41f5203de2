"""Before the idle limit the page warns; after it the login page says the session expired; a
break-the-glass justification being typed survives it (issue 21, part 6). Then the DPO
finds the emergency access as one alert, in French, linked to the patient's report.

Runs a second `vigie serve` with a one-minute idle limit (the shortest the setting allows):
the warning shows after half of it, the page goes to the login page just after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.axe import serious_violations
from tests.browser.live import Live
from tests.browser.pages import Shot, enter_code, log_in, path_of

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

JUSTIFICATION = "Patiente amenée inconsciente aux urgences, traitement en cours inconnu."


@pytest.fixture
def short_idle(live: Live) -> Iterator[Live]:
    server = live.installation.start_server(VIGIE_SESSION_IDLE_MINUTES="1")
    try:
        yield Live(installation=live.installation, server=server)
    finally:
        server.stop()
        live.installation.servers.remove(server)


def _stranger_ins(live: Live, doctor: str) -> str:
    facts = live.installation.facts
    mine = set(facts["scope"].get(doctor, []))
    return str(next(p["ins"] for p in facts["patients"] if p["public_id"] not in mine and p["ins"]))


def _look_up(page: Page, base_url: str, ins: str) -> None:
    page.goto(base_url + "/emergency/")
    page.fill("#id_ins", ins)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == "/emergency/confirm", page.url


def test_it_warns_then_expires_and_keeps_the_justification(
    page: Page, short_idle: Live, live: Live, shot: Shot
) -> None:
    doctor = live.installation.login("doctor", 2)
    log_in(page, short_idle, doctor)
    ins = _stranger_ins(live, doctor.username)
    _look_up(page, short_idle.base_url, ins)
    page.select_option("#id_reason", "patient_unconscious")
    page.fill("#id_justification", JUSTIFICATION)

    # About 30 s in (half of the minute), the page warns, in French.
    warning = page.locator("#idle-warning")
    expect(warning).to_be_visible(timeout=45_000)
    expect(warning).to_contain_text("votre session se ferme après 1 minute sans activité")
    # Announced without taking the focus from the justification being typed.
    assert page.evaluate("() => document.activeElement.id") == "id_justification"
    assert serious_violations(page) == []
    shot("idle-warning")

    # Past the limit the page reloads itself: the server has ended the session.
    page.wait_for_url("**/accounts/login/**", timeout=60_000)
    expect(page.locator("#session-expired")).to_contain_text("Votre session a expiré")
    shot("session-expired")

    # Logged in again, the doctor finds the patient again: the justification is still there.
    page.fill("#id_username", doctor.username)
    page.fill("#id_password", doctor.password)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    enter_code(page, live.installation.totp(doctor.totp_secret or ""))
    _look_up(page, short_idle.base_url, ins)
    expect(page.locator("#id_justification")).to_have_value(JUSTIFICATION)
    expect(page.locator("#id_reason")).to_have_value("patient_unconscious")
    shot("justification-kept")

    page.fill("#id_code", live.installation.totp(doctor.totp_secret or ""))
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page).startswith("/patients/"), page.url
    expect(page.locator(".emergency-banner")).to_be_visible()
    # Granted: the draft is forgotten (it would otherwise follow the doctor to the next patient).
    kept = page.evaluate(
        "() => Object.keys(sessionStorage).filter(k => k.startsWith('vigie-draft:')).length"
    )
    assert kept == 0


def test_the_dpo_sees_one_emergency_as_one_alert_linked_to_its_report(
    page: Page, live: Live, shot: Shot
) -> None:
    doctor = live.installation.login("doctor", 0)
    log_in(page, live, doctor)
    ins = _stranger_ins(live, doctor.username)
    _look_up(page, live.base_url, ins)
    page.select_option("#id_reason", "vital_emergency")
    page.fill("#id_justification", JUSTIFICATION)
    page.fill("#id_code", live.installation.totp(doctor.totp_secret or ""))
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page).startswith("/patients/")
    page.click(".site-header form[action='/accounts/logout/'] button")
    page.wait_for_load_state()

    log_in(page, live, live.installation.login("auditor"))
    alert = page.locator("main li", has_text=f"Accès d'urgence de {doctor.username} au patient")
    expect(alert).to_have_count(1)
    shot("dpo-home-with-alert")
    alert.locator("a:has-text('Voir le rapport')").click()
    page.wait_for_load_state()
    assert path_of(page).startswith("/audit/patients/")
    # This doctor's grant (another test may have opened the same patient's record).
    row = page.locator("table.audit-report tr", has_text="Accès d'urgence accordé").filter(
        has_text="Urgence vitale"
    )
    expect(row).to_have_count(1)
    expect(row).to_contain_text(JUSTIFICATION)
    shot("dpo-emergency-report")
