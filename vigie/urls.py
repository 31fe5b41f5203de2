from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path
from django.views.decorators.http import require_GET
from django.views.static import serve

from vigie.intake.fhir import urls as fhir_writes
from vigie.portal import fhir_urls as fhir_reads

# Vigie's own failure pages, in the user's language with a way home (portal/error_pages.py).
handler403 = "vigie.portal.error_pages.permission_denied"
handler404 = "vigie.portal.error_pages.page_not_found"
handler500 = "vigie.portal.error_pages.server_error"


@require_GET
def robots_txt(request: HttpRequest) -> HttpResponse:
    # Nothing here is for search engines: the incident's records were found through them.
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("", include("vigie.portal.urls")),
    path("robots.txt", robots_txt, name="robots_txt"),
    path("health", health, name="health"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/", include("vigie.accounts.urls")),
    path("audit/", include("vigie.audit.urls")),
    path("alerts/", include("vigie.alerts.urls")),
    path("guard/", include("vigie.guard.urls")),
    path("api/", include("vigie.intake.rest.urls")),
    # One FHIR endpoint, two channels: intake's writes and the portal's reads.
    path("fhir/", include(([*fhir_writes.urlpatterns, *fhir_reads.urlpatterns], "fhir"))),
    path("intake/reconcile/", include("vigie.intake.reconcile_urls")),
    path("admin/", admin.site.urls),
    # Collected assets, served here rather than by granian's static route so that every
    # answer under /static/ (file, 404, traversal refusal) passes the header middleware.
    # django.views.static normalises the path and refuses anything outside STATIC_ROOT; the
    # few small CSS/JS files are cached by browsers (Last-Modified, 304), so the cost of the
    # middleware stack per asset is paid rarely.
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}),
]
