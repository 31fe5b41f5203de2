from django.urls import URLPattern, path

from vigie.intake.rest import views

app_name = "rest"

urlpatterns: list[URLPattern] = [
    path("v1/documents", views.documents, name="documents"),
    path("v1/openapi.json", views.openapi, name="openapi"),
]
