"""axe-core over every page of every role, as served (real CSP): no serious or critical
violation for the doctor, IT (Django's admin included) or the DPO, nor on the failure pages.
The doctor's basic pages are also in test_accessibility.py; here are the rest. A screenshot
of each role's main pages is kept in test-artifacts/screenshots/.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.axe import serious_violations
from tests.browser.live import Live
from tests.browser.pages import Shot, log_in

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

Found = dict[str, list[dict[str, Any]]]


def _check(page: Page, live: Live, shot: Shot, pages: list[tuple[str, str]]) -> Found:
    found: Found = {}
    for name, url in pages:
        response = page.goto(live.base_url + url)
        assert response is not None, url
        assert response.status < 500 or response.status == 503, (url, response.status)
        found[name] = serious_violations(page)
        shot(name)
    return {name: v for name, v in found.items() if v}


def test_the_doctors_other_pages_have_no_serious_violation(
    page: Page, live: Live, shot: Shot
) -> None:
    doctor = live.installation.login("doctor", 1)
    log_in(page, live, doctor)
    facts = live.installation.facts
    mine = facts["scope"][doctor.username]
    patient = next(p for p in facts["patients"] if p["public_id"] == mine[0])
    pages = [
        ("search", "/?q=" + patient["family_name"][:3]),
        ("search-nothing", "/?q=zzzzzz"),
        ("inbox", "/inbox/"),
        ("timeline-filtered", f"/patients/{patient['public_id']}/?sort=kind"),
        ("lab-history", f"/patients/{patient['public_id']}/results/"),
        ("passkeys", "/accounts/passkeys/"),
        ("emergency-lookup", "/emergency/"),
        ("password", "/accounts/password/"),
        ("recovery-codes", "/accounts/recovery-codes/"),
        ("404", "/patients/" + "B" * 16 + "/"),
    ]
    assert _check(page, live, shot, pages) == {}
    # The break-the-glass form, with a patient found by exact identifier.
    stranger = next(p for p in facts["patients"] if p["public_id"] not in mine and p["ins"])
    page.goto(live.base_url + "/emergency/")
    page.fill("#id_ins", stranger["ins"])
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert serious_violations(page) == []
    shot("emergency-grant")


def test_it_pages_have_no_serious_violation(page: Page, live: Live, shot: Shot) -> None:
    log_in(page, live, live.installation.login("admin"))
    document = live.installation.facts["documents"][0]["id"]
    pages = [
        ("home", "/"),
        ("admin-index", "/admin/"),
        ("admin-users", "/admin/accounts/user/"),
        ("admin-user-add", "/admin/accounts/user/add/"),
        ("admin-patients", "/admin/records/patient/"),
        ("admin-documents", "/admin/records/document/"),
        ("admin-document", f"/admin/records/document/{document}/change/"),
        ("admin-care", "/admin/records/carerelationship/"),
        ("admin-emergencies", "/admin/records/emergencyaccess/"),
        ("admin-api-keys", "/admin/intake/apikey/"),
        ("admin-api-key-add", "/admin/intake/apikey/add/"),
        ("guard", "/guard/"),
        ("passkeys", "/accounts/passkeys/"),
        ("reconcile", "/intake/reconcile/"),
        ("alerts", "/alerts/"),
        ("403", "/emergency/"),
        ("404", "/nothing-here/"),
    ]
    assert _check(page, live, shot, pages) == {}


def test_the_dpos_pages_have_no_serious_violation(page: Page, live: Live, shot: Shot) -> None:
    log_in(page, live, live.installation.login("auditor"))
    facts = live.installation.facts
    patient = facts["patients"][0]
    doctor = live.installation.login("doctor")
    pages = [
        ("home", "/"),
        ("patient-search", "/dpo/patients/?q=" + patient["family_name"][:3]),
        ("patient-search-nothing", "/dpo/patients/?q=zzzzzz"),
        ("user-search", "/dpo/users/?q=" + doctor.username[:4]),
        ("dashboard", "/audit/"),
        ("patient-report", f"/audit/patients/{patient['ipp']}/"),
        ("actor-report", f"/audit/actors/{doctor.username}/"),
        ("alerts", "/alerts/"),
        ("passkeys", "/accounts/passkeys/"),
        ("404", "/documents/" + "C" * 32 + "/"),
    ]
    assert _check(page, live, shot, pages) == {}


def test_the_login_page_after_expiry_has_no_serious_violation(page: Page, live: Live) -> None:
    page.goto(live.base_url + "/accounts/login/?expired=1")
    assert page.locator("#session-expired").is_visible()
    assert serious_violations(page) == []
