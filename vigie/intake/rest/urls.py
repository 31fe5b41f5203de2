from django.urls import URLPattern, path

from vigie.intake.rest import hprim, views

app_name = "rest"

urlpatterns: list[URLPattern] = [
    path("v1/documents", views.documents, name="documents"),
    path("v1/hprim", hprim.hprim_file, name="hprim"),
    path("v1/openapi.json", views.openapi, name="openapi"),
]
