"""Headers every response carries, whatever view (or refusal) produced it.

Set here, not in views, so that a new view cannot forget them:
- X-Robots-Tag: the incident began with search engines indexing record links; the robots
  meta tag only covers HTML, this header covers PDFs, redirects and errors too.
- Cache-Control: no-store on everything but static assets, so no shared or browser cache
  keeps a page or a document after logout.

Content-Security-Policy comes from django-csp (settings.CONTENT_SECURITY_POLICY): no inline
script or style anywhere, and `frame-ancestors 'none'` (with X-Frame-Options: DENY) so no
page can be framed. One exception, for one view only: the document viewer embeds the PDF
content view in a same-origin <iframe>, so that content view alone relaxes
`frame-ancestors` to 'self' (django-csp's @csp_update/@csp_replace) together with
@xframe_options_sameorigin. No other view may do so.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

ROBOTS = "noindex, nofollow, noarchive"


def static_prefix() -> str:
    return "/" + settings.STATIC_URL.lstrip("/")


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["X-Robots-Tag"] = ROBOTS
        # Static assets are public and identical for everyone; everything else may hold a
        # patient's data or an authenticated page.
        if not request.path.startswith(static_prefix()):
            response["Cache-Control"] = "no-store"
        response.setdefault("X-Content-Type-Options", "nosniff")
        return response
