"""A copied session cookie is worth nothing once its session has ended or changed.

Against the real server, with plain http.client (what someone replaying a stolen cookie
uses): the cookie of a logged-out session is refused, it stays refused after the same doctor
logs in again, and the cookie seen between the password and the code never inherits the
logged-in session.
"""

from __future__ import annotations

import pytest

from tests.browser.live import HttpClient, Live, Reply, live_fixture  # noqa: F401 - shared fixture

pytestmark = pytest.mark.slow


def _csrf_token(page: Reply) -> str:
    marker = 'name="csrfmiddlewaretoken" value="'
    text = page.text()
    start = text.index(marker) + len(marker)
    return text[start : text.index('"', start)]


def _refused(client: HttpClient, cookies: dict[str, str], path: str) -> None:
    reply = client.request("GET", path, follow=False, cookies=dict(cookies))
    assert reply.status == 302, f"{path} answered {reply.status} to a replayed cookie"
    assert reply.location.startswith("/accounts/login/"), reply.location
    assert b"%PDF" not in reply.body


def test_it_refuses_a_session_cookie_replayed_after_logout(live: Live) -> None:
    installation = live.installation
    # Not the doctor of the browser tests: each login spends one of the account's TOTP steps.
    doctor = installation.login("doctor", 2)
    patient = installation.facts["scope"][doctor.username][0]
    document = next(d["id"] for d in installation.facts["documents"] if d["patient"] == patient)
    content = f"/documents/{document}/content"

    client = HttpClient(live.base_url)
    page = client.request("GET", "/accounts/login/")
    page = client.submit(page, {"username": doctor.username, "password": doctor.password})
    assert page.path.startswith("/accounts/verify/")
    half_logged_in = dict(client.cookies)
    assert doctor.totp_secret is not None
    home = client.submit(page, {"code": installation.totp(doctor.totp_secret)})
    assert home.path == "/", home.path
    stolen = dict(client.cookies)
    assert stolen["sessionid"] != half_logged_in["sessionid"], "no new session id at login"

    # The copy works while the session lives (so the refusals below mean something) ...
    assert client.request("GET", "/", follow=False, cookies=dict(stolen)).status == 200
    pdf = client.request("GET", content, follow=False, cookies=dict(stolen))
    assert pdf.status == 200
    assert pdf.body.startswith(b"%PDF")
    # ... but the session id seen between password and code never reaches anything.
    _refused(client, half_logged_in, "/")

    logout = client.request(
        "POST", "/accounts/logout/", {"csrfmiddlewaretoken": _csrf_token(home)}, follow=False
    )
    assert logout.status == 302
    assert logout.location.startswith("/accounts/login/")

    for path in ("/", f"/patients/{patient}/", f"/documents/{document}/", content):
        _refused(client, stolen, path)

    # The same doctor logs in again, from another client: the old cookie stays dead.
    again = HttpClient(live.base_url)
    again.login(installation, doctor)
    assert again.cookies["sessionid"] != stolen["sessionid"]
    assert again.request("GET", "/", follow=False).status == 200
    for path in ("/", content):
        _refused(client, stolen, path)
        _refused(client, half_logged_in, path)
