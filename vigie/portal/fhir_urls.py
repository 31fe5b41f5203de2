"""The FHIR reading channel's routes, mounted under /fhir/ by `vigie.urls` beside intake's
write routes. `DocumentReference` is both: a search (GET) here, a create (POST) handed on."""

from django.urls import URLPattern, path

from vigie.portal.views import fhir

urlpatterns: list[URLPattern] = [
    path("DocumentReference", fhir.document_reference_type, name="document_reference_type"),
    path(
        "DocumentReference/<str:document_id>",
        fhir.document_reference_read,
        name="document_reference_read",
    ),
    path("Binary/<str:document_id>", fhir.binary_read, name="binary_read"),
    path("Patient", fhir.patient_type, name="patient_type"),
    path("Patient/<str:public_id>", fhir.patient_read, name="patient_read"),
]
