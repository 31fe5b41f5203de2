from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET


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
    path("fhir/", include("vigie.intake.fhir.urls")),
    path("intake/reconcile/", include("vigie.intake.reconcile_urls")),
    path("admin/", admin.site.urls),
]
