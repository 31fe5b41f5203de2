from django.urls import path

from vigie.portal.views import documents, dpo, emergency, inbox, patients, results, search

app_name = "portal"

urlpatterns = [
    path("", search.home, name="home"),
    path("inbox/", inbox.inbox_page, name="inbox"),
    path("inbox/documents/<str:doc_id>/read", inbox.mark_document_read, name="mark_document_read"),
    path("inbox/patients/<str:public_id>/read", inbox.mark_patient_read, name="mark_patient_read"),
    path("patients/<str:public_id>/", patients.patient_detail, name="patient_detail"),
    path("patients/<str:public_id>/results/", results.patient_results, name="patient_results"),
    path("documents/<str:doc_id>/", documents.document_viewer, name="document_viewer"),
    path("documents/<str:doc_id>/content", documents.document_content, name="document_content"),
    path("documents/<str:doc_id>/download", documents.document_download, name="document_download"),
    path(
        "documents/<str:doc_id>/attachment", results.document_attachment, name="document_attachment"
    ),
    path(
        "documents/<str:doc_id>/attachment/download",
        results.document_attachment_download,
        name="document_attachment_download",
    ),
    path("emergency/", emergency.emergency_lookup, name="emergency_lookup"),
    path("emergency/confirm", emergency.emergency_grant, name="emergency_grant"),
    # The DPO's ways to the audit reports (role auditor only).
    path("dpo/patients/", dpo.patient_search, name="dpo_patients"),
    path("dpo/users/", dpo.actor_search, name="dpo_actors"),
]
