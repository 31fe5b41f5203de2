from django.urls import URLPattern, path

from vigie.intake.fhir import views

app_name = "fhir"

urlpatterns: list[URLPattern] = [
    path("", views.transaction, name="transaction"),
    path("metadata", views.metadata, name="metadata"),
    path("DocumentReference", views.document_reference_type, name="document_reference_type"),
    path(
        "DocumentReference/<str:document_id>",
        views.document_reference_read,
        name="document_reference_read",
    ),
    path("Binary/<str:document_id>", views.binary_read, name="binary_read"),
    path("Patient", views.patient_type, name="patient_type"),
    path("Patient/<str:public_id>", views.patient_read, name="patient_read"),
]
