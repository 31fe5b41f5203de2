from django.urls import URLPattern

app_name = "rest"

urlpatterns: list[URLPattern] = []
