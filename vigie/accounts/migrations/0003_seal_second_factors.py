"""Seal the authenticator seeds and hash the recovery codes already in the database.

Before this, django-otp kept both in clear: a copy of the database was enough to produce
any doctor's codes. Each seed moves into a sealed `TotpSeed` and the key column gets a
random value nobody knows; each recovery code is replaced by its keyed hash (see
`vigie.accounts.otp.recovery_code_hash`, which must stay in step with `_hash` below).
The keyring is loaded only when there is something to seal, so a fresh installation
migrates before its keyring exists. There is no way back: the clear values are gone.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.db import migrations

_SEPARATORS = re.compile(r"[\s-]+")


def _hash(code: str) -> str:
    from django.utils.crypto import salted_hmac

    normalised = _SEPARATORS.sub("", code or "").lower()
    return salted_hmac("vigie.accounts.recovery-code", normalised, algorithm="sha256").hexdigest()[
        :16
    ]


def seal(apps: Any, schema_editor: Any) -> None:
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    TotpSeed = apps.get_model("accounts", "TotpSeed")
    StaticToken = apps.get_model("otp_static", "StaticToken")
    unsealed = TOTPDevice.objects.filter(vigie_seed__isnull=True)
    if unsealed.exists():
        from vigie import vault

        for device in unsealed.iterator():
            seed_id = secrets.token_urlsafe(24)
            kek_id, wrapped, ciphertext = vault.seal_small(seed_id, bytes.fromhex(device.key))
            TotpSeed.objects.create(
                id=seed_id, device=device, kek_id=kek_id, wrapped_key=wrapped, ciphertext=ciphertext
            )
            TOTPDevice.objects.filter(pk=device.pk).update(key=secrets.token_hex(20))
    for token in StaticToken.objects.all().iterator():
        StaticToken.objects.filter(pk=token.pk).update(token=_hash(token.token))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_sealed_seeds_and_invitations"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(seal, migrations.RunPython.noop, elidable=False)]
