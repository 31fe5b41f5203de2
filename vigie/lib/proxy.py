"""Trust X-Forwarded-* only from the reverse proxies the operator named.

Behind nginx, the client's address and the original scheme arrive in headers that anyone can
forge. Lockout per source address and the audit trail's source IP are only as good as this:
we take the headers from a listed proxy's connection and drop them from everyone else's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")


def parse_networks(values: list[str]) -> list[_Network]:
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip()]


def _in(address: str, networks: list[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(remote_addr: str, forwarded_for: str, trusted: list[_Network]) -> str:
    """The right-most address in the chain that is not one of our proxies.

    Right to left, because each proxy appends the address it saw: entries left of the first
    untrusted one were written by the client and prove nothing.
    """
    if not _in(remote_addr, trusted):
        return remote_addr
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        if not _in(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote_addr
    return remote_addr


class TrustedProxyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.trusted = parse_networks(settings.VIGIE_TRUSTED_PROXIES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        peer = str(meta.get("REMOTE_ADDR", ""))
        if self.trusted and _in(peer, self.trusted):
            meta["REMOTE_ADDR"] = client_address(
                peer, str(meta.get("HTTP_X_FORWARDED_FOR", "")), self.trusted
            )
            proto = str(meta.get("HTTP_X_FORWARDED_PROTO", "")).split(",")[0].strip().lower()
            if proto in {"http", "https"}:
                meta["wsgi.url_scheme"] = proto
        else:
            # Nobody else may claim to be a proxy: drop what they sent.
            for header in _FORWARDED:
                meta.pop(header, None)
        return self.get_response(request)
