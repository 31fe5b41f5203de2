"""Authenticator seeds sealed under the keyring (accounts → vault, nothing else touches them).

django-otp keeps a TOTP seed in clear in `otp_totp_totpdevice.key`: anyone holding a copy of
the database (a dump, a backup, a read-only SQL account) could then compute every doctor's
codes. Here a device's seed is sealed into `TotpSeed` as the row is first written, and the
key column gets a random value that is never used (`SealedTOTPDevice.bin_key` reads the
sealed seed). The signals below do it for every way a device is created, so the demo, tests
and management commands that call `TOTPDevice.objects.create()` are covered too; the
in-memory object keeps its real key for the code that just created it.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from vigie import vault
from vigie.accounts.models import TotpSeed, new_secret_id

# Attributes set on a device object between pre_save and post_save, never stored.
_SEALED = "_vigie_sealed_seed"
_CLEAR_KEY = "_vigie_clear_key"
_CACHED = "_vigie_open_seed"


class SeedMissing(RuntimeError):
    """A device row without a sealed seed: made around Vigie's code, so never trusted."""


def open_seed(device: TOTPDevice) -> bytes:
    cached = getattr(device, _CACHED, None)
    if isinstance(cached, bytes):
        return cached
    sealed = TotpSeed.objects.filter(device_id=device.pk).first()
    if sealed is None:
        raise SeedMissing(f"authenticator {device.pk} has no sealed seed")
    seed = vault.open_small(
        sealed.id, sealed.kek_id, bytes(sealed.wrapped_key), bytes(sealed.ciphertext)
    )
    setattr(device, _CACHED, seed)
    return seed


def _before_save(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not isinstance(instance, TOTPDevice) or kwargs.get("raw"):
        return
    clear = getattr(instance, _CLEAR_KEY, None)
    if instance._state.adding and clear is None:
        seed = bytes.fromhex(instance.key)
        seed_id = new_secret_id()
        kek_id, wrapped, ciphertext = vault.seal_small(seed_id, seed)
        setattr(
            instance,
            _SEALED,
            TotpSeed(id=seed_id, kek_id=kek_id, wrapped_key=wrapped, ciphertext=ciphertext),
        )
        setattr(instance, _CLEAR_KEY, instance.key)
        setattr(instance, _CACHED, seed)
        clear = instance.key
    if clear is not None and instance.key == clear:
        # Written to the table instead of the seed: random, so it is no key anyone knows.
        instance.key = random_hex(20)


def _after_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not isinstance(instance, TOTPDevice) or kwargs.get("raw"):
        return
    sealed = getattr(instance, _SEALED, None)
    if sealed is not None:
        sealed.device_id = instance.pk
        sealed.save(force_insert=True)
        delattr(instance, _SEALED)
    clear = getattr(instance, _CLEAR_KEY, None)
    if clear is not None:
        instance.key = clear


def connect() -> None:
    pre_save.connect(_before_save, dispatch_uid="vigie.accounts.seal_seed")
    post_save.connect(_after_save, dispatch_uid="vigie.accounts.seal_seed_after")
