from django.urls import path

from vigie.alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list, name="list"),
    path("<int:alert_id>/acknowledge", views.alert_acknowledge, name="acknowledge"),
]
