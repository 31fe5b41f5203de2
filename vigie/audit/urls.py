from django.urls import path

from vigie.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("patients/<str:ipp>/", views.patient_report, name="patient_report"),
    path("actors/<str:username>/", views.actor_report, name="actor_report"),
]
