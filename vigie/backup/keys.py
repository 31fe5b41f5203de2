"""The installation's keys, exported apart from the backups under a passphrase.

A backup holds ciphertext and wrapped data keys; whoever steals it gets nothing readable. The
keys that open it (the keyring's KEKs, the audit signing key that also signs backup
manifests, and the secret key when it lives in a file) are exported to one file, encrypted
with AES-256-GCM under a key derived from a passphrase with Argon2id. The header (format,
KDF parameters, creation date) is the associated data, so editing it breaks decryption.

The file is meant for a safe place other than the backup's (a sealed envelope, a second
site): a clinic whose server and backup disk are both encrypted by attackers still has it.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from vigie.lib import durable
from vigie.vault import layout
from vigie.vault.kek_store import Keyring

FORMAT = "vigie-keys-export-1"
PASSPHRASE_ENV = "VIGIE_KEYS_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
MIN_PASSPHRASE_LENGTH = 12
# OWASP's Argon2id guidance (m ≥ 19 MiB, t ≥ 2), raised: an export is opened a few times a
# year, so a quarter of a second per guess costs the clinic nothing and an attacker a lot.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 2
# A hostile file must not make us allocate gigabytes or loop for minutes.
_MAX_MEMORY_KIB = 1024 * 1024
_MAX_TIME_COST = 20
_MAX_FILE_SIZE = 1024 * 1024
_NONCE_SIZE = 12
_SALT_SIZE = 16


class KeysExportError(Exception):
    """The export cannot be written or read; the message says what to do."""


@dataclass(frozen=True)
class KeyBundle:
    """Everything needed to open an installation's documents and check its signatures."""

    keyring: bytes = field(repr=False)  # the keyring file's content
    audit_signing_key: bytes = field(repr=False)  # PEM, Ed25519
    secret_key: str | None = field(default=None, repr=False)

    def open_keyring(self, label: Path) -> Keyring:
        return Keyring.from_bytes(self.keyring, label)

    def signing_key(self) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.audit_signing_key, password=None)
        except (ValueError, TypeError):
            raise KeysExportError("the exported audit signing key is not a PEM key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeysExportError("the exported audit signing key is not an Ed25519 key")
        return key

    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key().public_key()


def collect() -> KeyBundle:
    """Read this installation's keys from their files."""
    from vigie.audit.checkpoints import ensure_signing_key, load_signing_key, signing_key_path

    keyring_path = Path(settings.VIGIE_KEYRING_FILE)
    Keyring.load(keyring_path)  # refuses a corrupted or group-readable keyring, says why
    ensure_signing_key()
    load_signing_key()  # same checks for the signing key
    secret_file = Path(settings.VIGIE_SECRET_KEY_DEFAULT_FILE)
    # A secret key given through the environment is the deployment's to keep; only the
    # file that `vigie keys init` made is part of the installation's keys.
    secret = secret_file.read_text(encoding="utf-8").strip() if secret_file.is_file() else None
    return KeyBundle(
        keyring=keyring_path.read_bytes(),
        audit_signing_key=signing_key_path().read_bytes(),
        secret_key=secret,
    )


def passphrase_from_env_or_prompt(*, confirm: bool) -> str:
    """`VIGIE_KEYS_PASSPHRASE`, else a prompt on the terminal (twice when creating)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        try:
            value = getpass.getpass("Passphrase for the keys export: ")
            if confirm and getpass.getpass("Same passphrase again: ") != value:
                raise KeysExportError("the two passphrases differ")
        except EOFError:
            raise KeysExportError(
                f"no passphrase: set {PASSPHRASE_ENV} or run the command in a terminal"
            ) from None
    if confirm and len(value) < MIN_PASSPHRASE_LENGTH:
        raise KeysExportError(
            f"the passphrase is too short ({len(value)} characters, need "
            f"{MIN_PASSPHRASE_LENGTH}); a few unrelated words make a good one"
        )
    if not value:
        raise KeysExportError("the passphrase is empty")
    return value


def _derive(passphrase: str, salt: bytes, time_cost: int, memory_kib: int, lanes: int) -> bytes:
    return hash_secret_raw(
        passphrase.encode("utf-8"),
        salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=lanes,
        hash_len=32,
        type=Type.ID,
    )


def _aad(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def export_bundle(bundle: KeyBundle, path: Path, passphrase: str) -> None:
    """Write the bundle encrypted to `path` (mode 0600, durable); never overwrites."""
    if os.path.lexists(path):
        raise KeysExportError(f"{path} already exists; refusing to overwrite a keys export")
    salt = secrets.token_bytes(_SALT_SIZE)
    header = {
        "format": FORMAT,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "kdf": {
            "name": "argon2id",
            "time_cost": ARGON2_TIME_COST,
            "memory_kib": ARGON2_MEMORY_KIB,
            "parallelism": ARGON2_PARALLELISM,
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": "AES-256-GCM",
    }
    key = _derive(passphrase, salt, ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM)
    payload = json.dumps(
        {
            "keyring": base64.b64encode(bundle.keyring).decode(),
            "audit_signing_key": bundle.audit_signing_key.decode("ascii"),
            "secret_key": bundle.secret_key,
        }
    ).encode("utf-8")
    nonce = secrets.token_bytes(_NONCE_SIZE)
    sealed = AESGCM(key).encrypt(nonce, payload, _aad(header))
    document = {
        **header,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    content = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    try:
        durable.write_new(path, [content])
    except FileExistsError:
        raise KeysExportError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise KeysExportError(f"cannot write {path}: {exc.strerror}") from None


def _field(document: Mapping[str, Any], name: str, kind: type, path: Path) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeysExportError(f"{path} is not a valid Vigie keys export: bad '{name}'")
    return value


def _b64(value: str, name: str, path: Path) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeysExportError(f"{path} is not a valid Vigie keys export: bad '{name}'") from None


def read_bundle(path: Path, passphrase: str) -> KeyBundle:
    """Decrypt an export; KeysExportError names a wrong passphrase or a damaged file."""
    try:
        raw = path.read_bytes()[: _MAX_FILE_SIZE + 1]
    except FileNotFoundError:
        raise KeysExportError(f"keys export not found: {path}") from None
    except OSError as exc:
        raise KeysExportError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise KeysExportError(f"{path} is not a Vigie keys export (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeysExportError(f"{path} is not a Vigie keys export (format is not {FORMAT})")
    kdf = _field(document, "kdf", dict, path)
    if kdf.get("name") != "argon2id":
        raise KeysExportError(f"{path}: unknown key derivation {kdf.get('name')!r}")
    time_cost = _field(kdf, "time_cost", int, path)
    memory = _field(kdf, "memory_kib", int, path)
    lanes = _field(kdf, "parallelism", int, path)
    if not (1 <= time_cost <= _MAX_TIME_COST and 8 * lanes <= memory <= _MAX_MEMORY_KIB):
        raise KeysExportError(f"{path}: key derivation parameters out of bounds")
    if not 1 <= lanes <= 64:
        raise KeysExportError(f"{path}: key derivation parameters out of bounds")
    salt = _b64(_field(kdf, "salt", str, path), "salt", path)
    nonce = _b64(_field(document, "nonce", str, path), "nonce", path)
    sealed = _b64(_field(document, "ciphertext", str, path), "ciphertext", path)
    if len(nonce) != _NONCE_SIZE:
        raise KeysExportError(f"{path} is not a valid Vigie keys export: bad 'nonce'")
    header = {k: v for k, v in document.items() if k not in {"nonce", "ciphertext"}}
    key = _derive(passphrase, salt, time_cost, memory, lanes)
    try:
        payload = AESGCM(key).decrypt(nonce, sealed, _aad(header))
    except InvalidTag:
        raise KeysExportError(
            f"cannot open {path}: wrong passphrase, or the file was altered"
        ) from None
    try:
        content = json.loads(payload)
        bundle = KeyBundle(
            keyring=base64.b64decode(content["keyring"], validate=True),
            audit_signing_key=content["audit_signing_key"].encode("ascii"),
            secret_key=content.get("secret_key"),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise KeysExportError(f"{path}: the decrypted content is not a key bundle") from None
    bundle.open_keyring(path)  # a bundle whose keyring does not parse is useless: say so now
    bundle.signing_key()
    return bundle


def install(bundle: KeyBundle) -> list[Path]:
    """Write the bundle's keys where this installation's settings expect them.

    Used by restore into an empty VIGIE_HOME: refuses to replace any existing key file.
    """
    from vigie.audit.checkpoints import signing_key_path

    targets: list[tuple[Path, bytes]] = [
        (Path(settings.VIGIE_KEYRING_FILE), bundle.keyring),
        (signing_key_path(), bundle.audit_signing_key),
    ]
    if bundle.secret_key is not None and not settings.VIGIE_SECRET_KEY_CONFIGURED:
        targets.append((Path(settings.VIGIE_SECRET_KEY_DEFAULT_FILE), bundle.secret_key.encode()))
    for path, _content in targets:
        if os.path.lexists(path):
            raise KeysExportError(f"{path} already exists; refusing to replace a key file")
    written: list[Path] = []
    for path, content in targets:
        # Into the keys folder (apart from VIGIE_HOME), its parents left traversable.
        layout.make_keys_dir(path.parent)
        durable.write_new(path, [content])
        written.append(path)
    if bundle.secret_key is not None and not settings.VIGIE_SECRET_KEY_CONFIGURED:
        settings.SECRET_KEY = bundle.secret_key
        settings.VIGIE_SECRET_KEY_CONFIGURED = True
    return written
