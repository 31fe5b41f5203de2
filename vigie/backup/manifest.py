"""A snapshot's manifest: what it holds, with hashes, signed with the installation's key.

The signature is Ed25519 with the audit signing key (the one that signs audit checkpoints),
under its own domain label so a manifest signature can never pass for a checkpoint's. The
public key to check it with never comes from the backup itself: it comes from the keys
export or from the installation, so whoever can write to the backup disk cannot re-sign an
edited manifest.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vigie.audit.checkpoints import key_id
from vigie.backup import sealed
from vigie.backup.sealed import SealedEntry
from vigie.vault import Keyring

# 2: every file but the manifest is sealed. 1: files in clear, still read so that
# a clinic's older snapshots stay restorable; verify says they should go.
FORMAT = "vigie-backup-2"
CLEAR_FORMAT = "vigie-backup-1"
FORMATS = (FORMAT, CLEAR_FORMAT)
MANIFEST_NAME = "manifest.json"
_SIGN_DOMAIN = b"vigie/backup/manifest/v1\x00"
_MAX_MANIFEST = 256 * 1024 * 1024  # ~100 bytes a blob: millions of documents still fit


class ManifestError(Exception):
    """The manifest is missing, malformed or its signature does not hold."""


@dataclass(frozen=True)
class BlobEntry:
    id: str
    size: int
    sha256: str  # of the ciphertext as stored


@dataclass(frozen=True)
class Manifest:
    body: dict[str, Any]

    @property
    def snapshot_id(self) -> str:
        return str(self.body["id"])

    @property
    def engine(self) -> str:
        return str(self.body["engine"])

    @property
    def created(self) -> str:
        return str(self.body["created"])

    def file(self, role: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.body["files"][role]
        return entry

    @property
    def encrypted(self) -> bool:
        return bool(self.body["format"] == FORMAT)

    def sealed(self, role: str) -> SealedEntry | None:
        """How to open the file of `role`; None for a file in clear (a format-1 snapshot)."""
        if not self.encrypted:
            return None
        entry = SealedEntry.from_json(self.file(role).get("sealed"))
        if entry is None:  # refused when the manifest was loaded; never reached
            raise ManifestError(f"the manifest does not say how the {role} file is sealed")
        return entry

    def extract(self, role: str, folder: Path, target: Path, keyring: Keyring) -> None:
        """The plaintext of the file of `role` into the new private file `target`.

        SealedFileError says why it cannot (missing, wrong keyring, tampered).
        """
        source = folder / str(self.file(role).get("name", ""))
        sealed.extract(self.snapshot_id, role, self.sealed(role), source, target, keyring)

    def blobs(self) -> list[BlobEntry]:
        return [BlobEntry(b[0], b[1], b[2]) for b in self.body["blobs"]]


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(body: dict[str, Any], private: Ed25519PrivateKey) -> bytes:
    signature = private.sign(_SIGN_DOMAIN + canonical(body))
    document = {
        "manifest": body,
        "signature": {
            "alg": "ed25519",
            "key": key_id(private.public_key()),
            "sig": base64.b64encode(signature).decode(),
        },
    }
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode("utf-8")


def _check_body(body: Any) -> None:
    if not isinstance(body, dict) or body.get("format") not in FORMATS:
        raise ManifestError(f"not a Vigie backup manifest (format is not {FORMAT})")
    for name, kind in (("id", str), ("engine", str), ("created", str), ("files", dict)):
        if not isinstance(body.get(name), kind):
            raise ManifestError(f"the manifest has no valid '{name}'")
    for role, entry in body["files"].items():
        if not isinstance(entry, dict):
            raise ManifestError(f"the manifest's entry for the {role} file is malformed")
        if body["format"] == FORMAT and SealedEntry.from_json(entry.get("sealed")) is None:
            # Signed, so never an attacker's downgrade: a bug, and said so rather than
            # reading a file in clear that should not exist.
            raise ManifestError(f"the manifest does not say how the {role} file is sealed")
    blobs = body.get("blobs")
    if not isinstance(blobs, list) or not all(
        isinstance(b, list)
        and len(b) == 3
        and isinstance(b[0], str)
        and isinstance(b[1], int)
        and isinstance(b[2], str)
        for b in blobs
    ):
        raise ManifestError("the manifest's blob list is malformed")


def load(path: Path, public: Ed25519PublicKey | None) -> Manifest:
    """Read and, when `public` is given, authenticate the manifest at `path`."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_MANIFEST + 1)
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing") from None
    except OSError as exc:
        raise ManifestError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        document = json.loads(raw)
        body = document["manifest"]
        signature = document["signature"]
        sig = base64.b64decode(signature["sig"], validate=True)
        signer = signature["key"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ManifestError(f"{path} is not a signed Vigie backup manifest") from None
    _check_body(body)
    if public is not None:
        if signer != key_id(public):
            raise ManifestError(
                f"{path} is signed by key {signer}, not by this installation's key "
                f"{key_id(public)} (another installation's backup, or a forged manifest)"
            )
        try:
            public.verify(sig, _SIGN_DOMAIN + canonical(body))
        except InvalidSignature:
            raise ManifestError(
                f"{path}: the signature does not match the content (the manifest was edited)"
            ) from None
    return Manifest(body)
