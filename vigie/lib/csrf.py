"""Make Django's CSRF origin check work under `Referrer-Policy: no-referrer`.

With no-referrer (which the portal sends so that no URL naming a patient ever leaks), Chromium
sends `Origin: null` on form posts and no Referer at all, so Django's origin and referer
checks refuse every legitimate form. Fetch Metadata gives a reliable answer instead:
`Sec-Fetch-Site` is set by the browser, cannot be set by page scripts, and says
`same-origin` only for a request our own pages made. For exactly that case we restore the
Origin to our own, and Django's usual checks (the token included) run unchanged. A
cross-site page still arrives as `cross-site` (or `null` without the header) and is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class FetchMetadataOriginMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        if meta.get("HTTP_ORIGIN") == "null" and meta.get("HTTP_SEC_FETCH_SITE") == "same-origin":
            meta["HTTP_ORIGIN"] = f"{request.scheme}://{request.get_host()}"
        return self.get_response(request)
