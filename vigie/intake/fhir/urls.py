"""The FHIR endpoint's write routes. `vigie.urls` mounts them under /fhir/ together with the
portal's FHIR reading channel (`vigie.portal.fhir_urls`), in one `fhir` namespace."""

from django.urls import URLPattern, path

from vigie.intake.fhir import views

urlpatterns: list[URLPattern] = [
    path("", views.transaction, name="transaction"),
    path("metadata", views.metadata, name="metadata"),
]
