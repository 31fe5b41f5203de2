"""Every role finds its way, in French, in real Chromium (issue 21, parts 4, 5, 6 and 8).

The DPO's navigation from its home page to the reports (by a search field, never a typed
URL) and back; the failure pages (404, 403, refused form, lockdown) as Vigie pages with a way
home; IT's API key shown once after a redirect; the demo banner clear of the admin's title;
document lists without titles. Screenshots of each role's main pages are kept in
test-artifacts/screenshots/.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.axe import serious_violations
from tests.browser.live import Live
from tests.browser.pages import Shot, log_in, path_of

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def _plain(text: str) -> str:
    """What a hurried DPO types: no accents, lower case."""
    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).lower()


def _body_text(page: Page) -> str:
    return page.inner_text("body")


def test_the_dpo_finds_its_way_from_its_home_page(page: Page, live: Live, shot: Shot) -> None:
    dpo = live.installation.login("auditor")
    log_in(page, live, dpo)
    expect(page.locator("h1")).to_have_text("Protection des données : qui a vu quoi")
    # The same header as every role: the user's name and a logout button.
    expect(page.locator(".site-header .current-user")).to_contain_text(dpo.username)
    expect(page.locator(".site-header form[action='/accounts/logout/'] button")).to_be_visible()
    shot("home")

    # A patient's report, found by a search field: the name typed without accents.
    patient = live.installation.facts["patients"][0]
    page.fill("#patient-q", _plain(patient["family_name"]))
    page.click("form[action='/dpo/patients/'] button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == "/dpo/patients/"
    report_link = page.locator(f"a[href='/audit/patients/{patient['ipp']}/']")
    expect(report_link).to_be_visible()
    shot("patient-search")
    report_link.click()
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text(f"Accès au dossier du patient {patient['ipp']}")
    text = _body_text(page)
    assert "Europe/Paris" in text
    assert "document.read" not in text
    shot("patient-report")

    # A user's activity report, found the same way, from the header's home link.
    page.click(".site-header a:has-text('Accueil DPO')")
    page.wait_for_load_state()
    doctor = live.installation.login("doctor")
    page.fill("#actor-q", doctor.username)
    page.click("form[action='/dpo/users/'] button[type=submit]")
    page.wait_for_load_state()
    page.click(f"a[href='/audit/actors/{doctor.username}/']")
    page.wait_for_load_state()
    assert path_of(page) == f"/audit/actors/{doctor.username}/"
    shot("actor-report")

    for link, heading in [
        ("Tableau de bord d'audit", "Tableau de bord d'audit"),
        ("Alertes", "Alertes"),
    ]:
        page.click(f'.site-header nav a:has-text("{link}")')
        page.wait_for_load_state()
        expect(page.locator("h1")).to_have_text(heading)
    shot("alerts")

    page.click(".site-header form[action='/accounts/logout/'] button")
    page.wait_for_load_state()
    assert path_of(page) == "/accounts/login/"


def test_the_failure_pages_are_vigies_in_french_with_a_way_home(
    page: Page, live: Live, shot: Shot
) -> None:
    doctor = live.installation.login("doctor", 1)
    log_in(page, live, doctor)
    found: dict[str, list[dict[str, Any]]] = {}

    # 404: an absent record and one out of scope read the same, in French.
    page.goto(live.base_url + "/documents/" + "A" * 32 + "/")
    expect(page.locator("h1")).to_have_text("Page non trouvée")
    found["404"] = serious_violations(page)
    shot("404")
    page.click('main a:has-text("Retour à ma page d\'accueil")')
    page.wait_for_load_state()
    assert path_of(page) == "/"

    # A form whose CSRF cookie is gone (a logout in another tab, cookies cleared).
    page.context.clear_cookies(name="csrftoken")
    page.click(".lang-form button[type=submit]")
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("Formulaire expiré")
    assert "CSRF" not in _body_text(page)
    found["csrf"] = serious_violations(page)
    shot("csrf")

    # Lockdown: the maintenance page (503), with a way home.
    scope = live.installation.facts["scope"][doctor.username]
    live.installation.shell(
        "from vigie.guard.lockdown import engage; engage('browser test of the 503 page')"
    )
    try:
        response = page.goto(live.base_url + f"/patients/{scope[0]}/")
        assert response is not None
        assert response.status == 503
        expect(page.locator("h1")).to_have_text("Documents momentanément indisponibles")
        expect(page.locator("main a[href='/']")).to_be_visible()
        found["503"] = serious_violations(page)
        shot("503-lockdown")
    finally:
        live.installation.shell(
            "from vigie.accounts.models import User; from vigie.guard.lockdown import clear; "
            "clear(User.objects.filter(role='admin').first())"
        )
    assert {name: v for name, v in found.items() if v} == {}


def test_an_administrator_gets_a_403_page_in_french(page: Page, live: Live, shot: Shot) -> None:
    log_in(page, live, live.installation.login("admin"))
    response = page.goto(live.base_url + "/emergency/")
    assert response is not None
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("Accès refusé")
    assert serious_violations(page) == []
    shot("403")


def test_it_shows_a_new_api_key_once_with_a_way_back(page: Page, live: Live, shot: Shot) -> None:
    log_in(page, live, live.installation.login("admin"))
    page.goto(live.base_url + "/admin/intake/apikey/add/")
    page.fill("#id_name", "labo-navigateur")
    page.fill("#id_source_system", "LABO-NAV")
    page.click("input[name=_save]")
    page.wait_for_load_state()
    assert re.fullmatch(r"/admin/intake/apikey/\d+/created/", path_of(page)), page.url
    field = page.locator("#new-api-key")
    expect(field).to_have_attribute("readonly", "")
    key = field.input_value()
    assert re.fullmatch(r"vk_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}", key), key
    # Selectable in one go, to copy.
    field.select_text()
    assert (
        page.evaluate("() => window.getSelection().toString() || document.activeElement.value")
        == key
    )
    assert serious_violations(page) == []
    shot("key-created")
    # A reload neither posts again nor shows the key again.
    page.reload()
    assert key not in page.content()
    expect(page.locator("#content")).to_contain_text("déjà été affichée")
    page.click("a:has-text('Retour à la liste des clés d')")
    page.wait_for_load_state()
    assert path_of(page) == "/admin/intake/apikey/"
    expect(page.locator("#result_list")).to_contain_text("labo-navigateur")
    assert page.locator("#result_list tbody tr", has_text="labo-navigateur").count() == 1


def test_the_demo_banner_leaves_the_admin_title_visible(page: Page, live: Live, shot: Shot) -> None:
    log_in(page, live, live.installation.login("admin"))
    page.goto(live.base_url + "/admin/")
    banner = page.locator(".vigie-demo-banner").bounding_box()
    for selector in ("#site-name", "#content h1"):
        box = page.locator(selector).bounding_box()
        assert banner is not None
        assert box is not None
        overlap = not (
            box["y"] >= banner["y"] + banner["height"] or banner["y"] >= box["y"] + box["height"]
        )
        assert not overlap, (selector, banner, box)
    shot("admin-index")


def test_it_keeps_titles_out_of_its_document_lists(page: Page, live: Live, shot: Shot) -> None:
    log_in(page, live, live.installation.login("admin"))
    page.goto(live.base_url + "/admin/records/document/")
    # Every cell but the kind's: a title may be just the kind's name ("Ordonnance").
    listing = " | ".join(
        page.locator(
            "#result_list tbody td:not(.field-kind), #result_list tbody th"
        ).all_inner_texts()
    )
    titles = {d["title"] for d in live.installation.facts["documents"]}
    shown = sorted(t for t in titles if t and html.unescape(t) in listing)
    assert shown == []
    assert page.locator("#result_list tbody tr").count() > 0
    shot("document-list")
