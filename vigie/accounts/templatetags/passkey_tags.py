"""What the sign-in pages ask about passkeys: offered at all, and does this account have one."""

from __future__ import annotations

from typing import Any

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
