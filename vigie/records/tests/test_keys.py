from __future__ import annotations

from pathlib import Path

import pytest

from vigie import vault
from vigie.records import keys
from vigie.records.content import stream_verified
from vigie.records.models import Document
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db


def test_it_rotates_every_data_key_without_touching_content(vault_home: Path) -> None:
    patient = make_patient()
    contents = [f"%PDF document {i}".encode() for i in range(7)]
    documents = [make_document(patient, c) for c in contents]
    old_kek = documents[0].kek_id
    blob_bytes = {d.pk: vault.get_store().path_for(d.pk).read_bytes() for d in documents}
    seen: list[tuple[int, int]] = []

    result = keys.rotate(progress=lambda done, total: seen.append((done, total)))

    assert result.new_kek_id != old_kek
    assert result.rewrapped == 7
    assert seen[-1] == (7, 7)
    assert keys.key_usage() == {result.new_kek_id: 7}
    for document, content in zip(documents, contents, strict=True):
        document.refresh_from_db()
        assert b"".join(stream_verified(document)) == content
        # Re-wrapping changes the wrapped key only; the ciphertext on disk is identical.
        assert vault.get_store().path_for(document.pk).read_bytes() == blob_bytes[document.pk]


def test_it_refuses_to_remove_a_key_still_in_use(vault_home: Path) -> None:
    document = make_document(make_patient())
    ring = vault.get_keyring()
    old = document.kek_id
    ring.add_key()  # new active key, but nothing re-wrapped yet
    with pytest.raises(keys.KeyInUse, match="still wraps 1"):
        keys.remove_key(old)
    keys.rewrap_all()
    keys.remove_key(old)
    assert old not in vault.get_keyring().key_ids
    document.refresh_from_db()
    assert b"".join(stream_verified(document)) == b"%PDF-1.4 test"


def test_it_refuses_to_remove_the_active_key(vault_home: Path) -> None:
    with pytest.raises(vault.KeyringError):
        keys.remove_key(vault.get_keyring().active_id)


def test_rewrap_is_idempotent(vault_home: Path) -> None:
    make_document(make_patient())
    keys.rotate()
    assert keys.rewrap_all() == 0
    assert Document.objects.exclude(kek_id=vault.get_keyring().active_id).count() == 0


def test_rotation_rewraps_the_sealed_authenticator_seeds_too(vault_home: Path) -> None:
    from vigie.accounts.models import SealedTOTPDevice, TotpSeed
    from vigie.accounts.testing import make_user

    device = SealedTOTPDevice.objects.get(user=make_user("dr.seed"))
    seed = device.bin_key
    old_kek = vault.get_keyring().active_id
    assert keys.key_usage() == {old_kek: 1}
    result = keys.rotate()
    assert result.rewrapped == 1
    keys.remove_key(old_kek)
    assert TotpSeed.objects.get(device=device).kek_id == result.new_kek_id
    assert SealedTOTPDevice.objects.get(pk=device.pk).bin_key == seed
