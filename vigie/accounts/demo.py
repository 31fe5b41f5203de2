"""Second factor for the demo accounts: enrolled at seeding, so a newcomer can log in at once."""

from __future__ import annotations

from base64 import b32encode

from django_otp.plugins.otp_totp.models import TOTPDevice

from vigie.accounts.models import User
from vigie.accounts.otp import TOTP_DEVICE_NAME


def enrol_totp(user: User) -> str:
    """Give `user` a confirmed TOTP device; return its key in base32 (as authenticator apps
    take it) for demo-credentials.json."""
    device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    return b32encode(device.bin_key).decode("ascii")
