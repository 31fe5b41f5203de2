"""Included by accounts/urls.py under psc/; the names join the `accounts` namespace."""

from django.urls import path

from vigie.accounts.psc import views

urlpatterns = [
    path("start/", views.start_view, name="psc_start"),
    path("callback/", views.callback_view, name="psc_callback"),
    path("backchannel-logout/", views.backchannel_logout_view, name="psc_backchannel_logout"),
]
