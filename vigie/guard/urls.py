from django.urls import path

from vigie.guard import views

app_name = "guard"

urlpatterns = [
    path("", views.guard_page, name="page"),
    path("lockdown/clear", views.clear_lockdown, name="clear_lockdown"),
    path("alerts/<int:alert_id>/acknowledge", views.acknowledge_alert, name="acknowledge"),
]
