from __future__ import annotations

import pytest

from vigie.vault import IntegrityError, Keyring, open_small, seal_small


def test_it_round_trips_a_seed_without_keeping_it_in_clear(keyring: Keyring) -> None:
    seed = bytes(range(20))
    kek_id, wrapped, ciphertext = seal_small("seed-1", seed, keyring=keyring)
    assert kek_id == keyring.active_id
    assert seed not in ciphertext
    assert seed not in wrapped
    assert open_small("seed-1", kek_id, wrapped, ciphertext, keyring=keyring) == seed


def test_it_refuses_a_sealed_seed_copied_onto_another_row(keyring: Keyring) -> None:
    kek_id, wrapped, ciphertext = seal_small("seed-1", b"x" * 20, keyring=keyring)
    with pytest.raises(IntegrityError):
        open_small("seed-2", kek_id, wrapped, ciphertext, keyring=keyring)


def test_it_refuses_a_tampered_ciphertext(keyring: Keyring) -> None:
    kek_id, wrapped, ciphertext = seal_small("seed-1", b"x" * 20, keyring=keyring)
    altered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(IntegrityError):
        open_small("seed-1", kek_id, wrapped, altered, keyring=keyring)


def test_it_still_opens_after_the_data_key_is_rewrapped(keyring: Keyring) -> None:
    from vigie import vault

    kek_id, wrapped, ciphertext = seal_small("seed-1", b"seed", keyring=keyring)
    keyring.add_key()
    new_kek, new_wrapped = vault.rewrap("seed-1", kek_id, wrapped, keyring=keyring)
    assert new_kek != kek_id
    assert open_small("seed-1", new_kek, new_wrapped, ciphertext, keyring=keyring) == b"seed"
