"""Passkeys in real Chromium, with its virtual authenticator (the DevTools protocol's WebAuthn
domain): registration, sign-in alone and as the second factor, revocation, a wrong origin,
and a cloned authenticator whose counter went back.

Passkeys need a name, not an IP address, so these tests browse http://localhost:PORT (the
demo's own address); the wrong-origin test serves the same installation as vigie.test and
as its neighbour evil.vigie.test, in a browser that resolves both to loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import CDPSession, Page, expect

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.browser.live import Live, Login
from tests.browser.pages import Shot, enter_code, path_of

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]
MARK = "@@VIGIE-PASSKEY@@"


@dataclass
class VirtualAuthenticator:
    cdp: CDPSession
    id: str

    def credentials(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.id}
        )["credentials"]
        return found

    def set_counter(self, credential: dict[str, Any], count: int) -> None:
        """Put the credential back with an older counter: what a copy made earlier holds."""
        self.cdp.send(
            "WebAuthn.removeCredential",
            {"authenticatorId": self.id, "credentialId": credential["credentialId"]},
        )
        self.cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": self.id, "credential": {**credential, "signCount": count}},
        )


def add_authenticator(page: Page) -> VirtualAuthenticator:
    """A platform authenticator with PIN or biometrics, always touched and verified."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return VirtualAuthenticator(cdp, added["authenticatorId"])


@pytest.fixture
def authenticator(page: Page) -> VirtualAuthenticator:
    return add_authenticator(page)


@pytest.fixture
def forget_failures(live: Live) -> Iterator[None]:
    yield
    live.installation.reset_lockouts()


def by_name(base_url: str, host: str = "localhost") -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{host}:{parts.port}"


def sign_in_with_code(page: Page, base: str, live: Live, user: Login) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", user.password)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == "/accounts/verify/", page.url
    assert user.totp_secret is not None
    enter_code(page, live.installation.totp(user.totp_secret))
    assert path_of(page) == "/", page.url


def register_passkey(page: Page, base: str, name: str) -> None:
    page.goto(base + "/accounts/passkeys/")
    page.fill("#passkey-name", name)
    with page.expect_navigation():
        page.click("[data-passkey=register] [data-passkey-start]")
    expect(page.locator("#passkey-list")).to_contain_text(name)


def passkey_button(page: Page) -> Any:
    return page.locator("[data-passkey] [data-passkey-start]")


def sign_in_by_autofill(page: Page, base: str) -> None:
    """Open the login page and let the browser offer the passkey in the identifier field
    (conditional mediation); the virtual authenticator accepts at once."""
    page.context.clear_cookies()
    with page.expect_navigation(url=base + "/"):
        page.goto(base + "/accounts/login/")


def without_autofill(page: Page) -> None:
    """From now on this page behaves as a browser without conditional mediation: the login
    page then offers the button only (and nothing answers before it is pressed)."""
    page.add_init_script(
        "if (window.PublicKeyCredential) {"
        " PublicKeyCredential.isConditionalMediationAvailable = async () => false; }"
    )


def click_passkey_button(page: Page, base: str) -> None:
    without_autofill(page)
    page.context.clear_cookies()
    page.goto(base + "/accounts/login/")
    passkey_button(page).click()


def passkey_state(live: Live, username: str) -> dict[str, Any]:
    found: dict[str, Any] = live.installation.shell_json(
        f"""
import json
from vigie.accounts.models import Passkey
from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
keys = list(Passkey.objects.filter(user__username={username!r}).values(
    "name", "confirmed", "sign_count", "revoked_reason"))
alerts = list(Alert.objects.filter(kind="system.passkey.clone_suspected",
    details__username={username!r}).values_list("severity", flat=True))
events = list(AuditEvent.objects.filter(actor_username={username!r},
    action__startswith="passkey.").order_by("seq").values("action", "reason"))
print({MARK!r} + json.dumps(dict(keys=keys, alerts=alerts, events=events), default=str))
""",
        MARK,
    )
    return found


def test_it_registers_a_passkey_then_signs_in_with_it_alone_and_after_the_password(
    page: Page, live: Live, shot: Shot, authenticator: VirtualAuthenticator
) -> None:
    doctor = live.installation.create_doctor("dr.cle")
    base = by_name(live.base_url)
    page.goto(base + "/accounts/login/")
    expect(page.locator("section.passkey-login")).to_be_visible()
    expect(page.locator(".passkey-login .demo-codes")).to_be_visible()  # the demo explains
    shot("login-page")
    sign_in_with_code(page, base, live, doctor)
    register_passkey(page, base, "Poste du cabinet")
    shot("registered")
    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"]
    assert credential["rpId"] == "localhost"

    # Alone: no identifier, no password, no code; offered by the identifier field.
    sign_in_by_autofill(page, base)
    expect(page.locator(".current-user")).to_contain_text(doctor.username)
    # Alone, with the button.
    with page.expect_navigation(url=base + "/"):
        click_passkey_button(page, base)
    expect(page.locator(".current-user")).to_contain_text(doctor.username)

    # After the password, the passkey is the second factor.
    page.context.clear_cookies()
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", doctor.username)
    page.fill("#id_password", doctor.password)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    assert path_of(page) == "/accounts/passkeys/verify/", page.url
    shot("second-factor")
    with page.expect_navigation(url=base + "/"):
        passkey_button(page).click()

    state = passkey_state(live, doctor.username)
    assert [k["sign_count"] for k in state["keys"]] == [authenticator.credentials()[0]["signCount"]]
    assert [e["action"] for e in state["events"]] == [
        "passkey.registered",
        "passkey.used",
        "passkey.used",
        "passkey.used",
    ]


def test_it_revokes_a_passkey_which_then_opens_nothing(
    page: Page, live: Live, shot: Shot, authenticator: VirtualAuthenticator, forget_failures: None
) -> None:
    doctor = live.installation.create_doctor("dr.revoque")
    base = by_name(live.base_url)
    sign_in_with_code(page, base, live, doctor)
    register_passkey(page, base, "Téléphone perdu")
    with page.expect_navigation():
        page.click("#passkey-list button[type=submit]")
    expect(page.locator("#passkey-none")).to_be_visible()
    shot("revoked")
    # The authenticator still holds it; the portal no longer accepts it.
    assert len(authenticator.credentials()) == 1
    click_passkey_button(page, base)
    expect(page.locator("[data-passkey-error]")).to_be_visible()
    assert path_of(page) == "/accounts/login/"
    page.goto(base + "/")
    assert path_of(page) == "/accounts/login/"
    state = passkey_state(live, doctor.username)
    assert state["keys"][0]["revoked_reason"] == "revoked"
    assert state["events"][-2:] == [
        {"action": "passkey.revoked", "reason": ""},
        {"action": "passkey.refused", "reason": "revoked"},
    ]


RELAY_SCRIPT = """async () => {
    const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
    const send = (url, body) => fetch(url, {method: "POST", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json", "X-CSRFToken": token}});
    const options = await (await send("/accounts/passkeys/login/options/", {})).json();
    const credential = await navigator.credentials.get(
        {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
    const signed = JSON.parse(new TextDecoder().decode(credential.response.clientDataJSON));
    const response = await send("/accounts/passkeys/login/", {credential: credential.toJSON()});
    return {status: response.status, origin: signed.origin, rpId: options.rpId};
}"""


def test_attack_a_passkey_used_from_another_origin_is_refused(
    page: Page, live: Live, shot: Shot, forget_failures: None
) -> None:
    # The portal is vigie.test; a compromised neighbour, evil.vigie.test, may ask the browser
    # for the portal's passkeys (its RP ID is a suffix of the neighbour's name) and relay the
    # answer. The browser signs the origin it really is on into that answer. Both names point
    # at the same installation here, in a browser told they resolve to loopback and count as
    # secure (as HTTPS would make them).
    server = live.installation.start_server(
        VIGIE_ALLOWED_HOSTS="vigie.test,127.0.0.1,evil.vigie.test"
    )
    port = urlsplit(server.base_url).port
    portal, evil = f"http://vigie.test:{port}", f"http://evil.vigie.test:{port}"
    browser = page.context.browser
    assert browser is not None
    named = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_ARGS,
            "--host-resolver-rules=MAP vigie.test 127.0.0.1, MAP evil.vigie.test 127.0.0.1",
            f"--unsafely-treat-insecure-origin-as-secure={portal},{evil}",
        ],
    )
    try:
        own = named.new_context(locale="fr-FR").new_page()
        own.set_default_timeout(15_000)
        authenticator = add_authenticator(own)
        doctor = live.installation.create_doctor("dr.origine")
        sign_in_with_code(own, portal, live, doctor)
        register_passkey(own, portal, "PC")
        assert authenticator.credentials()[0]["rpId"] == "vigie.test"
        # The neighbour's page does what a relaying attacker's script does: it fetches a
        # challenge from the portal, has the browser answer it for the portal's RP ID, and
        # posts the answer back. (The portal's own page there offers no passkey button.)
        own.context.clear_cookies()
        own.goto(evil + "/accounts/login/")
        expect(own.locator("#passkey-elsewhere")).to_be_visible()
        own.screenshot(path=shot("wrong-origin"))
        answer = own.evaluate(RELAY_SCRIPT)
        assert answer["status"] == 400, answer
        assert answer["origin"] == evil
        own.goto(evil + "/")
        assert path_of(own) == "/accounts/login/"
    finally:
        named.close()
        server.stop()
    refused = passkey_state(live, doctor.username)["events"][-1]
    assert refused == {"action": "passkey.refused", "reason": "wrong_origin"}


def test_attack_a_cloned_authenticator_is_refused_and_alerted(
    page: Page, live: Live, shot: Shot, authenticator: VirtualAuthenticator, forget_failures: None
) -> None:
    doctor = live.installation.create_doctor("dr.clone")
    base = by_name(live.base_url)
    sign_in_with_code(page, base, live, doctor)
    register_passkey(page, base, "Clé USB")
    sign_in_by_autofill(page, base)
    sign_in_by_autofill(page, base)
    [credential] = authenticator.credentials()
    assert credential["signCount"] >= 2
    # A copy taken before those two sign-ins: its counter is behind the portal's.
    authenticator.set_counter(credential, 0)
    click_passkey_button(page, base)
    expect(page.locator("[data-passkey-error]")).to_contain_text("copi")
    shot("clone-refused")
    assert path_of(page) == "/accounts/login/"
    state = passkey_state(live, doctor.username)
    assert state["keys"][0]["confirmed"] is False
    assert state["keys"][0]["revoked_reason"] == "clone_suspected"
    assert state["alerts"] == ["critical"]
    assert state["events"][-1] == {
        "action": "passkey.clone_suspected",
        "reason": "counter_not_increasing",
    }
