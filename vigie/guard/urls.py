from django.urls import URLPattern

app_name = "guard"

urlpatterns: list[URLPattern] = []
