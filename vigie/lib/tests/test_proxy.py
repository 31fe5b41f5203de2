from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from vigie.lib.proxy import TrustedProxyMiddleware, client_address, parse_networks

TRUSTED = parse_networks(["10.0.0.2", "fd00::/64"])


def _through(settings, meta: dict[str, str], trusted: list[str]) -> HttpRequest:
    settings.VIGIE_TRUSTED_PROXIES = trusted
    seen: list[HttpRequest] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse("ok")

    request = RequestFactory().get("/")
    request.META.update(meta)
    TrustedProxyMiddleware(view)(request)
    return seen[0]


def test_it_takes_the_client_address_from_a_trusted_proxy(settings) -> None:
    request = _through(
        settings,
        {
            "REMOTE_ADDR": "10.0.0.2",
            "HTTP_X_FORWARDED_FOR": "203.0.113.7",
            "HTTP_X_FORWARDED_PROTO": "https",
        },
        ["10.0.0.2"],
    )
    assert request.META["REMOTE_ADDR"] == "203.0.113.7"
    assert request.is_secure()


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(settings) -> None:
    # An attacker resets their lockout counter by claiming a new address each try: refused.
    request = _through(
        settings,
        {
            "REMOTE_ADDR": "198.51.100.9",
            "HTTP_X_FORWARDED_FOR": "127.0.0.1",
            "HTTP_X_FORWARDED_PROTO": "https",
        },
        ["10.0.0.2"],
    )
    assert request.META["REMOTE_ADDR"] == "198.51.100.9"
    assert "HTTP_X_FORWARDED_FOR" not in request.META
    assert not request.is_secure()


def test_without_configured_proxies_forwarded_headers_are_dropped(settings) -> None:
    request = _through(
        settings, {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}, []
    )
    assert request.META["REMOTE_ADDR"] == "10.0.0.2"
    assert "HTTP_X_FORWARDED_FOR" not in request.META


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # The client prepended a fake hop; the proxy appended the real one: take the real one.
        ("127.0.0.1, 203.0.113.7", "203.0.113.7"),
        ("203.0.113.7, 10.0.0.2", "203.0.113.7"),
        ("not-an-ip", "10.0.0.2"),
        ("", "10.0.0.2"),
    ],
)
def test_it_picks_the_rightmost_untrusted_hop(chain: str, expected: str) -> None:
    assert client_address("10.0.0.2", chain, TRUSTED) == expected
