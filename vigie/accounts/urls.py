from django.urls import include, path

from vigie.accounts import views
from vigie.accounts import views_passkeys as pk

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
    # Passkeys (views_passkeys.py): pages, and the two JSON steps of each ceremony.
    path("passkeys/", pk.manage_view, name="passkeys"),
    path("passkeys/<int:passkey_id>/revoke/", pk.revoke_view, name="passkey_revoke"),
    path("passkeys/login/options/", pk.login_options_view, name="passkey_login_options"),
    path("passkeys/login/", pk.login_view, name="passkey_login"),
    path("passkeys/verify/", pk.verify_page_view, name="passkey_verify"),
    path(
        "passkeys/second-factor/options/",
        pk.second_factor_options_view,
        name="passkey_second_factor_options",
    ),
    path("passkeys/second-factor/", pk.second_factor_view, name="passkey_second_factor"),
    path("passkeys/reauth/options/", pk.reauth_options_view, name="passkey_reauth_options"),
    path("passkeys/reauth/", pk.reauth_view, name="passkey_reauth"),
    path("passkeys/enrol/", pk.enrol_view, name="passkey_enrol"),
    path("passkeys/register/options/", pk.register_options_view, name="passkey_register_options"),
    path("passkeys/register/", pk.register_view, name="passkey_register"),
    # Pro Santé Connect (accounts/psc): accounts:psc_start, psc_callback, psc_backchannel_logout
    path("psc/", include("vigie.accounts.psc.urls")),
]
