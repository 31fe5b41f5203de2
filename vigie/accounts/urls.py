from django.urls import include, path

from vigie.accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("invitation/", views.invitation_view, name="invitation"),
    path("verify/", views.verify_view, name="verify"),
    path("enrol/", views.enrol_view, name="enrol"),
    path("recovery-codes/", views.recovery_codes_view, name="recovery_codes"),
    path("recovery-codes/new/", views.new_recovery_codes_view, name="new_recovery_codes"),
    path("reauth/", views.reauth_view, name="reauth"),
    path("password/", views.password_change_view, name="password_change"),
    path("logout/", views.logout_view, name="logout"),
    path("locked/", views.locked_view, name="locked"),
    # Pro Santé Connect (accounts/psc): accounts:psc_start, psc_callback, psc_backchannel_logout
    path("psc/", include("vigie.accounts.psc.urls")),
]
