"""What the sign-in pages ask about passkeys: offered at all, and does this account have one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import template

from vigie.accounts import passkeys, signin_policy

register = template.Library()


@register.simple_tag
def passkey_login_offered() -> bool:
    """The login page offers a passkey alone when some role may sign in that way."""
    return passkeys.available() and signin_policy.any_role_allows(
        frozenset({signin_policy.PASSKEY})
    )


@register.simple_tag
def has_passkey(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and signin_policy.has_passkey(user)


@register.simple_tag
def passkey_address(request: Any) -> str:
    """'' when passkeys work at the address this page was opened by; otherwise the address
    where they do (a passkey is bound to the portal's name: the demo opened as
    http://127.0.0.1:8000 must send people to http://localhost:8000)."""
    own = f"{request.scheme}://{request.get_host()}"
    origins = passkeys.expected_origins(request)
    if own in origins:
        return ""
    if origins:
        return origins[0]
    port = urlsplit(own).port  # as the browser sent it in Host
    suffix = f":{port}" if port else ""
    return f"{request.scheme}://{passkeys.rp_id()}{suffix}"
