"""Small secrets (a second factor's seed, a few dozen bytes) sealed like documents.

Same envelope as a document: a fresh data key encrypts the value, the keyring's active KEK
wraps the data key under the value's id. The caller keeps the three results on its row, so
`records.keys` rotates these data keys with the documents' and a database dump alone opens
nothing. The id binds the ciphertext to its row: copied onto another row, it does not open.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vigie.vault.envelope import new_data_key
from vigie.vault.errors import IntegrityError, VaultError
from vigie.vault.kek_store import Keyring, get_keyring

_NONCE_SIZE = 12
# A label of its own, so a sealed small secret never authenticates as a document chunk.
_DOMAIN = b"vigie/vault/small-secret/v1\x00"
# Seeds and the like; anything larger is a document and goes through `seal`.
MAX_SMALL_SECRET = 4096


def _aad(secret_id: str) -> bytes:
    if not isinstance(secret_id, str) or not secret_id:
        raise VaultError("a small secret needs an id")
    encoded = secret_id.encode("utf-8")
    return _DOMAIN + len(encoded).to_bytes(4, "big") + encoded


def seal_small(
    secret_id: str, value: bytes, *, keyring: Keyring | None = None
) -> tuple[str, bytes, bytes]:
    """Encrypt `value`; returns (kek_id, wrapped data key, ciphertext) to store together."""
    if len(value) > MAX_SMALL_SECRET:
        raise VaultError(f"secret {secret_id}: {len(value)} bytes is not a small secret")
    aad = _aad(secret_id)
    ring = keyring or get_keyring()
    data_key = new_data_key()
    kek_id, wrapped = ring.wrap(data_key, secret_id)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return kek_id, wrapped, nonce + AESGCM(data_key).encrypt(nonce, value, aad)


def open_small(
    secret_id: str,
    kek_id: str,
    wrapped_key: bytes,
    ciphertext: bytes,
    *,
    keyring: Keyring | None = None,
) -> bytes:
    """The value sealed by `seal_small`; IntegrityError if anything was altered or moved."""
    aad = _aad(secret_id)
    ring = keyring or get_keyring()
    data_key = ring.unwrap(kek_id, wrapped_key, secret_id)
    nonce, sealed = ciphertext[:_NONCE_SIZE], ciphertext[_NONCE_SIZE:]
    try:
        return AESGCM(data_key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise IntegrityError(f"secret {secret_id}: the ciphertext does not authenticate") from None


# Records larger than a secret but kept beside their row, not in the blob store (a document's
# parsed lab results): one data key, several parts, each part its own AES-GCM message.
_RECORD_DOMAIN = b"vigie/vault/sealed-record/v1\x00"
MAX_RECORD_PART = 64 * 1024 * 1024


def _record_aad(record_id: str, index: int) -> bytes:
    return _RECORD_DOMAIN + _aad(record_id)[len(_DOMAIN) :] + index.to_bytes(4, "big")


def seal_record(
    record_id: str, parts: list[bytes], *, keyring: Keyring | None = None
) -> tuple[str, bytes, list[bytes]]:
    """Encrypt each of `parts` under one fresh data key wrapped for `record_id`; returns
    (kek_id, wrapped data key, ciphertexts in order). Each ciphertext names its position,
    so parts can be neither swapped nor moved to another record."""
    for part in parts:
        if len(part) > MAX_RECORD_PART:
            raise VaultError(f"record {record_id}: a part of {len(part)} bytes is too large")
    ring = keyring or get_keyring()
    data_key = new_data_key()
    kek_id, wrapped = ring.wrap(data_key, record_id)
    cipher = AESGCM(data_key)
    sealed = []
    for index, part in enumerate(parts):
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed.append(nonce + cipher.encrypt(nonce, part, _record_aad(record_id, index)))
    return kek_id, wrapped, sealed


def open_record(
    record_id: str,
    kek_id: str,
    wrapped_key: bytes,
    ciphertext: bytes,
    index: int,
    *,
    keyring: Keyring | None = None,
) -> bytes:
    """Part `index` of a record sealed by `seal_record`; IntegrityError if altered or moved."""
    ring = keyring or get_keyring()
    data_key = ring.unwrap(kek_id, wrapped_key, record_id)
    nonce, sealed = ciphertext[:_NONCE_SIZE], ciphertext[_NONCE_SIZE:]
    try:
        return AESGCM(data_key).decrypt(nonce, sealed, _record_aad(record_id, index))
    except InvalidTag:
        raise IntegrityError(f"record {record_id}: part {index} does not authenticate") from None
