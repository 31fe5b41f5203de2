"""Mounted at /intake/reconcile/ (see vigie/urls.py); views in vigie.intake.reconcile."""

from django.urls import path

from vigie.intake import reconcile

app_name = "reconcile"

urlpatterns = [
    path("", reconcile.pending_list, name="list"),
    path("<str:pending_id>/", reconcile.pending_detail, name="detail"),
    path("<str:pending_id>/attach/<str:public_id>", reconcile.attach_confirm, name="attach"),
    path("<str:pending_id>/reject", reconcile.reject_pending, name="reject"),
]
