"""An anonymous outsider against the real server: a login page and nothing else.

The crawler follows every link of the public pages (href, src, action; same origin), then
tries the paths an attacker would guess: every document id and patient id of the database,
the blob store's layout, traversal and encoding tricks, admin and API paths, with GET, HEAD
and OPTIONS. Requests go out through http.client with the raw path, so nothing normalises
"%2e%2e/" or backslashes on our side. No answer may carry PDF bytes or a patient's family
name, no answer may be a server error, and every non-public path must be refused: a redirect
to the login page, or 400/401/403/404/405.

A second pass runs the same sweep against a server with Pro Santé Connect configured (the
login page then links to PSC, and the crawler follows it) and tries every sign-in method's
endpoints as an outsider: PSC's start, callback and back-channel logout, and each passkey JSON
step, with and without a CSRF token, with junk and with a well-formed but forged assertion.
"""

from __future__ import annotations

import http.client
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.browser.live import Live, live_fixture  # noqa: F401 - the shared fixture
from tests.psc.served import PscServer, serve_with_psc

# What a browser or an outsider sees does not depend on the database engine: the SQLite pass
# runs these once (the PostgreSQL pass serves the same demo in test_audit_through_server).
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

REFUSED = {400, 401, 403, 404, 405}
REDIRECTS = {301, 302, 303, 307, 308}
# Paths an outsider may see: the login pages, static assets, health, robots, language switch,
# and the ways in of the other sign-in methods (accounts/deny_by_default.PUBLIC_VIEWS). What
# each of those answers an outsider is asserted one by one in _sign_in_problems:
PUBLIC_PREFIXES = (
    "/accounts/login",
    "/static/",
    "/health",
    "/robots.txt",
    "/i18n/",
    "/favicon",
    # A passkey alone: options/ gives a challenge with no account's credentials in it (the
    # browser lists discoverable passkeys), login/ refuses anything but a valid assertion.
    "/accounts/passkeys/login/",
    # Pro Santé Connect (404 where it is not configured): start/ redirects to the provider;
    # callback/ without a session is a page that moves on to itself, then refuses (400) a
    # state it never issued; backchannel-logout/ refuses junk logout tokens (400), and GET.
    "/accounts/psc/start/",
    "/accounts/psc/callback/",
    "/accounts/psc/backchannel-logout/",
)
# Every passkey JSON step: the two public ones above, the others need a signed-in session.
PASSKEY_POSTS = (
    "/accounts/passkeys/login/options/",
    "/accounts/passkeys/login/",
    "/accounts/passkeys/second-factor/options/",
    "/accounts/passkeys/second-factor/",
    "/accounts/passkeys/reauth/options/",
    "/accounts/passkeys/reauth/",
    "/accounts/passkeys/register/options/",
    "/accounts/passkeys/register/",
    "/accounts/passkeys/1/revoke/",
)
# Shaped like a browser's answer to a challenge, signed by nobody the portal knows.
FORGED_ASSERTION = {
    "id": "Zm9yZ2Vk",
    "rawId": "Zm9yZ2Vk",
    "type": "public-key",
    "response": {
        "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0",
        "authenticatorData": "AAAA",
        "signature": "AAAA",
        "userHandle": "AAAA",
    },
}
MAX_PAGES = 200


@dataclass
class Answer:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"href", "src", "action", "formaction", "poster", "data"} and value:
                self.links.append(value)
            if name == "srcset" and value:
                self.links += [part.strip().split(" ")[0] for part in value.split(",")]


class Outsider:
    """An anonymous client: no cookies kept, raw paths, one keep-alive connection."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.conn: http.client.HTTPConnection | None = None
        self.answers: list[Answer] = []

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                # skip_host/skip_accept_encoding off: a plain request, path sent byte for byte.
                self.conn.putrequest(method, path, skip_accept_encoding=True)
                self.conn.putheader("Accept", "text/html,application/pdf,*/*")
                self.conn.putheader("User-Agent", "vigie-crawler-test")
                for name, value in (headers or {}).items():
                    self.conn.putheader(name, value)
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                response = self.conn.getresponse()
                body = response.read()
                answer = Answer(method, path, response.status, dict(response.getheaders()), body)
                if response.will_close:
                    self.close()
                self.answers.append(answer)
                return answer
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def local_path(self, link: str, base_path: str) -> str | None:
        """The path of a same-origin link, or None for another origin / non-HTTP scheme."""
        absolute = urljoin(self.origin + base_path, link)
        parts = urlsplit(absolute)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            return None
        return parts.path + (f"?{parts.query}" if parts.query else "")


def _location_path(answer: Answer) -> str:
    location = answer.headers.get("Location") or answer.headers.get("location") or ""
    return urlsplit(location).path


def _is_public(path: str) -> bool:
    # A traversal attempt is never public, whatever prefix it borrows.
    tricks = ("..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "%25", "//")
    bare = path.split("?")[0]
    return bare.startswith(PUBLIC_PREFIXES) and not any(t in bare for t in tricks)


@pytest.fixture(scope="module")
def login_path(live: Live) -> str:
    outsider = Outsider(live.base_url)
    answer = outsider.request("GET", "/")
    outsider.close()
    assert answer.status in REDIRECTS, f"/ answered {answer.status} to an outsider"
    return _location_path(answer)


def _crawl(outsider: Outsider, start: str) -> set[str]:
    seen: set[str] = set()
    queue: deque[str] = deque([start, "/"])
    while queue and len(seen) < MAX_PAGES:
        path = queue.popleft()
        if path in seen:
            continue
        seen.add(path)
        answer = outsider.request("GET", path)
        if answer.status in REDIRECTS:
            target = outsider.local_path(
                answer.headers.get("Location") or answer.headers.get("location") or "", path
            )
            if target is not None:
                queue.append(target)
            continue
        content_type = answer.headers.get("Content-Type") or answer.headers.get("content-type")
        if answer.status == 200 and "html" in (content_type or ""):
            parser = _Links()
            parser.feed(answer.body.decode("utf-8", "replace"))
            for link in parser.links:
                target = outsider.local_path(link, path)
                if target is not None and target not in seen:
                    queue.append(target)
    return seen


def _guessed_paths(live: Live) -> tuple[list[str], list[str]]:
    """(paths tried with GET, paths also tried with HEAD and OPTIONS)."""
    facts = live.installation.facts
    ids = [d["id"] for d in facts["documents"]]
    patients = [p["public_id"] for p in facts["patients"]]
    get_only: list[str] = []
    for doc in ids:
        get_only += [
            f"/documents/{doc}/",
            f"/documents/{doc}/content",
            f"/documents/{doc}/download",
        ]
    for patient in patients:
        get_only += [f"/patients/{patient}/", f"/patients/{patient}"]
    some = ids[:3]
    every_method: list[str] = [
        "/",
        "/?q=a",
        "/search/?q=a",
        "/patients/",
        "/documents/",
        "/admin/",
        "/admin/login/",
        "/admin/records/document/",
        "/admin/records/patient/",
        "/admin/accounts/user/",
        "/admin/audit/",
        "/audit/",
        "/api/",
        "/api/v1/documents/",
        "/api/documents/",
        "/fhir/",
        "/fhir/DocumentReference",
        "/fhir/Patient",
        "/intake/",
        "/media/",
        "/blobs/",
        "/var/blobs/",
        "/vigie.sqlite3",
        "/var/vigie.sqlite3",
        "/keyring/keyring.json",
        "/keyring/secret_key",
        "/demo-credentials.json",
        "/var/demo-credentials.json",
        "/.env",
        "/.git/config",
        "/__debug__/",
        "/server-status",
        "/metrics",
        "/accounts/passkeys/",
        "/accounts/passkeys/login/options/",
        "/accounts/passkeys/login/",
        "/accounts/passkeys/verify/",
        "/accounts/passkeys/enrol/",
        "/accounts/passkeys/register/options/",
        "/accounts/psc/start/",
        "/accounts/psc/start/?purpose=reauth&next=/admin/",
        "/accounts/psc/callback/",
        "/accounts/psc/callback/?continue=1",
        "/accounts/psc/callback/?state=forged&code=forged&continue=1",
        "/accounts/psc/backchannel-logout/",
        "/accounts/psc/../../documents/",
        "/static/",
        "/static/../blobs/",
        "/static/../keyring/keyring.json",
        "/static/..%2fkeyring/keyring.json",
        "/static/%2e%2e/keyring/keyring.json",
        "/static/%2e%2e%2fkeyring%2fkeyring.json",
        "/static/%252e%252e/keyring/keyring.json",
        "/static/..%5ckeyring%5ckeyring.json",
        "/static/..\\keyring\\keyring.json",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/....//....//etc/passwd",
        "/static/../vigie.sqlite3",
        "/static/%2e%2e/vigie.sqlite3",
        "/static/%2e%2e/demo-credentials.json",
        "//etc/passwd",
        "/..%2f..%2f..%2fetc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ]
    for doc in some:
        shard = f"{doc[:2]}/{doc}.blob"
        every_method += [
            f"/documents/{doc}",
            f"/documents/{doc}/",
            f"/documents/{doc}/content",
            f"/documents/{doc}/content/",
            f"/documents/{doc}/download",
            f"/documents/{doc}/download/",
            f"/documents/{doc}/content?inline=1",
            f"/documents/{doc}//content",
            f"/documents/{doc}/%63ontent",
            f"/documents/{doc}%2fcontent",
            f"/documents/{doc}%252fcontent",
            f"/Documents/{doc}/content",
            f"/documents/{doc}/content%00",
            f"/documents/{doc}/content;.pdf",
            f"/documents/{doc}/content.pdf",
            f"/documents/{doc}.pdf",
            f"/static/../documents/{doc}/content",
            f"/static/%2e%2e/documents/{doc}/content",
            f"/health/../documents/{doc}/content",
            f"/accounts/login/../../documents/{doc}/content",
            f"/accounts/login/%2e%2e/%2e%2e/documents/{doc}/content",
            f"/accounts/login/..%2f..%2fdocuments%2f{doc}%2fcontent",
            f"/robots.txt/../documents/{doc}/download",
            f"/static/..%5c..%5cdocuments%5c{doc}%5cdownload",
            f"/blobs/{shard}",
            f"/var/blobs/{shard}",
            f"/static/../blobs/{shard}",
            f"/static/%2e%2e/blobs/{shard}",
            f"/static/%252e%252e/blobs/{shard}",
            f"/static/..%2fblobs%2f{doc[:2]}%2f{doc}.blob",
            f"/static/..\\blobs\\{doc[:2]}\\{doc}.blob",
            f"/media/{doc}",
            f"/media/{shard}",
            f"/admin/records/document/{doc}/change/",
            f"/api/documents/{doc}",
            f"/fhir/Binary/{doc}",
            f"/fhir/DocumentReference/{doc}",
        ]
    for patient in patients[:3]:
        every_method += [
            f"/patients/{patient}/",
            f"/patients/{patient}/documents/",
            f"/patients/{patient}/../../admin/",
            f"/static/../patients/{patient}/",
            f"/accounts/login/../../patients/{patient}/",
        ]
    return get_only, every_method


def _leaks(answer: Answer, names: list[str]) -> list[str]:
    text = answer.body + "\n".join(f"{k}: {v}" for k, v in answer.headers.items()).encode()
    # Whole words only: a random document id echoed in a login redirect ("...RYGAY2j...")
    # must not count as the patient "GAY", while "GAY Marie" in a page always does.
    found = [
        name
        for name in names
        if re.search(rb"(?<![A-Za-z0-9_])" + re.escape(name.encode()) + rb"(?![A-Za-z0-9_])", text)
    ]
    if b"%PDF" in text:
        found.append("%PDF")
    return found


def _patient_names(live: Live) -> list[str]:
    names = sorted(
        {p["family_name"] for p in live.installation.facts["patients"]}
        | {p["family_name"].upper() for p in live.installation.facts["patients"]}
    )
    assert len(names) >= 40
    return names


def _sweep(
    live: Live,
    base_url: str,
    login_path: str,
    probe: Callable[[Outsider], list[str]] | None = None,
) -> None:
    """Crawl, guess, run `probe` (which returns its own problems), then judge every answer."""
    names = _patient_names(live)
    outsider = Outsider(base_url)
    problems: list[str] = []
    try:
        crawled = _crawl(outsider, login_path)
        assert login_path in crawled
        get_only, every_method = _guessed_paths(live)
        for path in get_only:
            outsider.request("GET", path)
        for path in every_method:
            for method in ("GET", "HEAD", "OPTIONS"):
                outsider.request(method, path)
            if not path.endswith("/"):
                outsider.request("GET", path + "/")
        if probe is not None:
            problems += probe(outsider)
    finally:
        outsider.close()

    answers = outsider.answers
    assert len(answers) > 1200
    for answer in answers:
        where = f"{answer.method} {answer.path} -> {answer.status}"
        leaks = _leaks(answer, names)
        if leaks:
            problems.append(f"{where} discloses {leaks[:5]}")
        if answer.status >= 500:
            problems.append(f"{where}: server error")
            continue
        if _is_public(answer.path):
            continue
        if answer.status in REFUSED:
            continue
        if answer.status in REDIRECTS and _location_path(answer) == login_path:
            continue
        problems.append(f"{where} (Location {_location_path(answer)!r}) is not a refusal")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def test_it_shows_an_outsider_a_login_page_and_nothing_else(live: Live, login_path: str) -> None:
    _sweep(live, live.base_url, login_path)


# --- every sign-in method configured: Pro Santé Connect and passkeys ---


@pytest.fixture(scope="module")
def psc(live: Live) -> Iterator[PscServer]:
    with serve_with_psc(live.installation) as served:
        yield served


def _csrf(outsider: Outsider, login_path: str) -> dict[str, str]:
    """What the login page's script sends with its JSON: the cookie and the form's token."""
    page = outsider.request("GET", login_path)
    cookie = next(
        (
            value.split(";")[0].split("=", 1)[1]
            for name, value in page.headers.items()
            if name.lower() == "set-cookie" and value.startswith("csrftoken=")
        ),
        None,
    )
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert cookie, "the login page sets no CSRF cookie"
    assert token, "the login page's form has no CSRF token"
    return {
        "Cookie": f"csrftoken={cookie}",
        "X-CSRFToken": token.group(1).decode(),
        "Origin": outsider.origin,
        "Content-Type": "application/json",
    }


def _sign_in_problems(outsider: Outsider, login_path: str) -> list[str]:
    """Each sign-in endpoint as an outsider: what it must answer, beyond 'no leak'."""
    problems: list[str] = []

    def expect(answer: Answer, allowed: set[int], why: str) -> None:
        if answer.status not in allowed:
            problems.append(f"{answer.method} {answer.path} -> {answer.status}: {why}")

    # Pro Santé Connect: the way in goes to the provider, never to a page of ours.
    start = outsider.request("GET", "/accounts/psc/start/")
    expect(start, {302}, "start must redirect to the provider")
    target = urlsplit(start.headers.get("Location") or start.headers.get("location") or "")
    if f"{target.scheme}://{target.netloc}" == outsider.origin or "state=" not in target.query:
        problems.append(f"PSC start redirects to {target.geturl()!r}, not the provider")
    for query in ("continue=1", "state=forged&code=forged&continue=1", "error=access_denied"):
        answer = outsider.request("GET", f"/accounts/psc/callback/?{query}")
        # Without continue=1 and no session, the page that moves on to itself (200, no data).
        allowed = {200} if "continue=1" not in query else {400}
        expect(answer, allowed, "a callback with no state of ours must be refused")
    bounced = outsider.request("GET", "/accounts/psc/callback/?error=access_denied")
    if b"continue=1" not in bounced.body:
        problems.append("the callback's bounce page does not move on to itself")
    for body in (b"", b"logout_token=junk", b"logout_token=a.b.c"):
        answer = outsider.request(
            "POST",
            "/accounts/psc/backchannel-logout/",
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        expect(answer, {400}, "a junk logout token must be refused with 400")
    expect(outsider.request("GET", "/accounts/psc/backchannel-logout/"), {405}, "POST only")

    def refused(answer: Answer) -> bool:
        return answer.status in REFUSED or (
            answer.status in REDIRECTS and _location_path(answer) == login_path
        )

    # Passkeys, without a CSRF token: the public steps refuse it (403), the others send an
    # outsider to the login page before CSRF is even looked at.
    for path in PASSKEY_POSTS:
        answer = outsider.request("POST", path, b"{}", {"Content-Type": "application/json"})
        if path.startswith("/accounts/passkeys/login/"):
            expect(answer, {403}, "a POST without a CSRF token must be refused")
        elif not refused(answer):
            problems.append(f"POST {path} -> {answer.status}: needs a signed-in session")
    # With the token the login page gives anyone.
    headers = _csrf(outsider, login_path)
    options = outsider.request("POST", "/accounts/passkeys/login/options/", b"{}", headers)
    # A challenge (200), or 409 where this address has no passkey relying party.
    expect(options, {200, 409}, "options give a challenge or say passkeys are unavailable")
    if options.status == 200:
        challenge = json.loads(options.body)
        if challenge.get("allowCredentials"):
            problems.append(f"sign-in options name credentials: {challenge['allowCredentials']}")
        said = set(challenge) - {"challenge", "timeout", "rpId", "allowCredentials"}
        if said - {"userVerification", "hints"}:
            problems.append(f"sign-in options say more than a challenge: {sorted(challenge)}")
    forged = json.dumps({"credential": FORGED_ASSERTION}).encode()
    for body in (b"", b"junk", b"[]", b'{"credential": "x"}', b'{"credential": {}}', forged):
        answer = outsider.request("POST", "/accounts/passkeys/login/", body, headers)
        expect(answer, {400}, "a sign-in without a valid assertion must be refused")
        if b"sessionid=" in "".join(answer.headers.values()).encode() and answer.status == 200:
            problems.append("a refused passkey sign-in opened a session")
    for path in PASSKEY_POSTS[2:]:
        for body in (b"{}", forged):
            answer = outsider.request("POST", path, body, headers)
            if not refused(answer):
                problems.append(f"POST {path} -> {answer.status}: needs a signed-in session")
    return problems


def test_it_shows_an_outsider_nothing_more_with_every_sign_in_method(
    live: Live, login_path: str, psc: PscServer
) -> None:
    # The login page offers PSC: the crawler reaches it from there, like any visitor.
    page = Outsider(psc.server.base_url)
    try:
        assert b"/accounts/psc/start/" in page.request("GET", login_path).body
    finally:
        page.close()
    _sweep(
        live,
        psc.server.base_url,
        login_path,
        lambda outsider: _sign_in_problems(outsider, login_path),
    )
