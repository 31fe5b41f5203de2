"""Every answer under /static/ from a real `vigie serve` carries Vigie's headers.

granian's static route used to answer /static/ itself (files, 404s, traversal attempts alike)
without X-Robots-Tag, nosniff or a CSP; the files are now served by Django behind the header
middleware, and a traversal attempt yields nothing outside STATIC_ROOT.
"""

from __future__ import annotations

import http.client
import secrets
from urllib.parse import urlsplit

from tests.browser.live import Live, live_fixture  # noqa: F401 - the shared fixture


def _get(live: Live, path: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(live.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", path)  # sent as written: no client-side normalisation
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def _assert_vigie_headers(path: str, headers: dict[str, str]) -> None:
    assert headers.get("x-robots-tag") == "noindex, nofollow, noarchive", (path, headers)
    assert headers.get("x-content-type-options") == "nosniff", (path, headers)
    assert "default-src" in headers.get("content-security-policy", ""), (path, headers)


def test_attack_static_route_answers_without_vigie_headers_and_traversal_leaks_nothing(
    live: Live,
) -> None:
    # A file beside the static root, in VIGIE_HOME: what a traversal would be after.
    secret = secrets.token_hex(16)
    (live.installation.home / "outside-static.txt").write_text(secret)

    status, headers, body = _get(live, "/static/vigie/vigie.css")
    assert status == 200, body[:200]
    assert body  # the real stylesheet
    _assert_vigie_headers("/static/vigie/vigie.css", headers)

    for path in ("/static/", "/static/no-such-file.css"):
        status, headers, body = _get(live, path)
        assert status == 404, (path, status)
        _assert_vigie_headers(path, headers)

    for path in (
        "/static/%2e%2e/var/",
        "/static/../outside-static.txt",
        "/static/%2e%2e/outside-static.txt",
        "/static/..%2foutside-static.txt",
        "/static/%2e%2e%2foutside-static.txt",
        "/static/%252e%252e/outside-static.txt",
        "/static/..%5coutside-static.txt",
        "/static//" + str(live.installation.home / "outside-static.txt"),
    ):
        status, headers, body = _get(live, path)
        assert status in (400, 404), (path, status)
        assert secret.encode() not in body, path
        _assert_vigie_headers(path, headers)
