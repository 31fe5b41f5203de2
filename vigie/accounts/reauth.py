"""Re-authentication before sensitive actions: a recent second-factor proof is required.

    from vigie.accounts.reauth import require_fresh_second_factor

    @require_fresh_second_factor
    def break_the_glass(request): ...

A session whose last second-factor check is older than VIGIE_REAUTH_MAX_AGE_SECONDS is sent
to `accounts:reauth?next=<this path>`; after a valid code it comes back. A stolen session
cookie alone is then not enough for the actions that matter most.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from vigie.accounts.otp import second_factor_age

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponse])


def is_second_factor_fresh(request: HttpRequest) -> bool:
    age = second_factor_age(request)
    return age is not None and age <= settings.VIGIE_REAUTH_MAX_AGE_SECONDS


def reauth_redirect(request: HttpRequest) -> HttpResponseRedirect:
    # GET requests come back to where they were; a POST cannot be replayed by a redirect,
    # so it comes back to the page it was posted from (or home).
    target = request.get_full_path() if request.method in ("GET", "HEAD") else "/"
    return HttpResponseRedirect(f"{reverse('accounts:reauth')}?{urlencode({'next': target})}")


def require_fresh_second_factor(view: ViewFunc) -> ViewFunc:
    """Decorator: the view runs only if the second factor was proved recently."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_second_factor_fresh(request):
            return reauth_redirect(request)
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
