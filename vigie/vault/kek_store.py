"""The keyring: key-encryption keys (KEKs) that wrap each document's data key.

The keyring is a small JSON file kept apart from the blobs and the database (mode 0600, in a
0700 folder), so whoever copies the blob store or a database dump gets ciphertext and wrapped
keys, never what opens them::

    {"format": "vigie-keyring-1", "active": "k-20261129-223400-3f9a1c",
     "keys": [{"id": "k-20261129-223400-3f9a1c", "created": "2026-11-29T22:34:00+00:00",
               "key": "<32 random bytes, base64>"}]}

New documents are wrapped with the active key. Rotation adds a key and makes it active; old
keys stay until every document wrapped with them has been rewrapped (records checks that
before calling `remove_key`).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vigie.lib import durable
from vigie.vault.errors import IntegrityError, KeyringError, VaultError

FORMAT = "vigie-keyring-1"
KEK_SIZE = 32
DATA_KEY_SIZE = 32

_KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A keyring holds a handful of keys; anything near this size is not a keyring.
_MAX_FILE_SIZE = 1024 * 1024

# A wrapped key is: version (1 byte) | nonce (12) | AES-GCM(data key) (32) | tag (16).
_WRAP_VERSION = 1
_NONCE_SIZE = 12
WRAPPED_KEY_SIZE = 1 + _NONCE_SIZE + DATA_KEY_SIZE + 16
# The label keeps a wrapped data key from ever authenticating as any other AES-GCM message
# made with a KEK, should KEKs one day serve another purpose.
_WRAP_DOMAIN = b"vigie/vault/wrapped-data-key/v1\x00"


@dataclass(frozen=True)
class _Key:
    id: str
    created: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class _State:
    """One consistent view of the file; replaced whole, so readers never need the lock."""

    active_id: str
    keys: tuple[_Key, ...]
    ciphers: Mapping[str, AESGCM] = field(repr=False)
    # Identity, content and metadata times of the file this state was read from.
    stamp: tuple[int, ...]


def _length_prefixed(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def _wrap_aad(kek_id: str, document_id: str) -> bytes:
    return _WRAP_DOMAIN + _length_prefixed(kek_id) + _length_prefixed(document_id)


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    # ctime and mode too: a chmod to 0644 must be noticed (and refused) like a rewrite.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def _corrupted(path: Path, reason: str) -> KeyringError:
    return KeyringError(f"keyring {path} is corrupted: {reason}")


def _parse_key(path: Path, raw: Any, seen: set[str]) -> _Key:
    if not isinstance(raw, dict):
        raise _corrupted(path, "each entry of 'keys' must be an object")
    key_id, created, encoded = raw.get("id"), raw.get("created"), raw.get("key")
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise _corrupted(path, f"invalid key id {key_id!r}")
    if key_id in seen:
        raise _corrupted(path, f"key id {key_id} appears twice")
    if not isinstance(created, str):
        raise _corrupted(path, f"key {key_id} has no 'created' date")
    try:
        datetime.fromisoformat(created)
    except ValueError:
        raise _corrupted(path, f"key {key_id} has an invalid 'created' date") from None
    if not isinstance(encoded, str):
        raise _corrupted(path, f"key {key_id} has no 'key' value")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _corrupted(path, f"key {key_id} is not valid base64") from None
    if len(secret) != KEK_SIZE:
        raise _corrupted(path, f"key {key_id} is {len(secret)} bytes, expected {KEK_SIZE}")
    seen.add(key_id)
    return _Key(key_id, created, secret)


def _parse(path: Path, content: bytes, stamp: tuple[int, ...]) -> _State:
    try:
        document = json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise _corrupted(path, "not valid JSON") from None
    if not isinstance(document, dict):
        raise _corrupted(path, "the top level must be an object")
    if document.get("format") != FORMAT:
        raise _corrupted(path, f"format is {document.get('format')!r}, expected {FORMAT!r}")
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise _corrupted(path, "'keys' must be a non-empty list")
    seen: set[str] = set()
    keys = tuple(_parse_key(path, raw, seen) for raw in raw_keys)
    active = document.get("active")
    if not isinstance(active, str) or active not in seen:
        raise _corrupted(path, f"active key {active!r} is not among the keys")
    ciphers = {key.id: AESGCM(key.secret) for key in keys}
    return _State(active, keys, ciphers, stamp)


def _read(path: Path) -> _State:
    try:
        # O_NONBLOCK: a FIFO planted at this path must not hang the process at open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyringError(f"keyring not found: {path}") from None
    except OSError as exc:
        raise KeyringError(f"keyring {path} cannot be opened: {exc.strerror}") from None
    try:
        # fstat on the open descriptor: the checks apply to the very file we read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyringError(f"keyring {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            access = "readable" if mode & 0o044 else "writable"
            raise KeyringError(
                f"keyring {path} is {access} by group/others (mode {mode:04o}); "
                f"run chmod 600 {path}"
            )
        if st.st_size > _MAX_FILE_SIZE:
            raise _corrupted(path, f"{st.st_size} bytes is far too large for a keyring")
        try:
            content = os.read(fd, _MAX_FILE_SIZE + 1)
        except OSError as exc:
            raise KeyringError(f"keyring {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return _parse(path, content, _stamp(st))


def _serialize(active_id: str, keys: tuple[_Key, ...]) -> bytes:
    document = {
        "format": FORMAT,
        "active": active_id,
        "keys": [
            {"id": k.id, "created": k.created, "key": base64.b64encode(k.secret).decode()}
            for k in keys
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _write(path: Path, content: bytes, *, replace: bool) -> None:
    """Write the keyring atomically and durably: readers see the old file or the new one."""
    durable.write_new(path, [content], replace=replace)


def _new_key(existing: set[str]) -> _Key:
    now = datetime.now(UTC).replace(microsecond=0)
    # Timestamp first so ids sort by creation (to the second); the random tail keeps two
    # keys made in the same second, by two processes, distinct.
    while True:
        key_id = f"k-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        if key_id not in existing:
            return _Key(key_id, now.isoformat(), secrets.token_bytes(KEK_SIZE))


class Keyring:
    """The KEKs of one keyring file. Thread-safe; use `load`, `create` or `get_keyring`."""

    def __init__(self, path: Path, state: _State, *, in_memory: bool = False) -> None:
        self._path = path
        self._state = state
        self._lock = threading.RLock()
        # A keyring read from a passphrase-protected export (backup verify, restore) has no
        # file to watch: it never reloads and refuses changes.
        self._in_memory = in_memory

    def __repr__(self) -> str:
        return f"<Keyring {self._path} active={self._state.active_id} keys={len(self._state.keys)}>"

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read and check the keyring file; KeyringError says what is wrong and how to fix it."""
        return cls(path, _read(path))

    @classmethod
    def from_bytes(cls, content: bytes, label: Path) -> Keyring:
        """A read-only keyring from the content of a keyring file (e.g. a decrypted export);
        `label` names it in error messages."""
        if len(content) > _MAX_FILE_SIZE:
            raise _corrupted(label, f"{len(content)} bytes is far too large for a keyring")
        return cls(label, _parse(label, content, ()), in_memory=True)

    @classmethod
    def create(cls, path: Path) -> Keyring:
        """Create a new keyring with one active key; refuses to touch an existing file."""
        if os.path.lexists(path):
            raise KeyringError(f"keyring already exists: {path}; refusing to overwrite it")
        folder = path.parent
        try:
            if not durable.make_private_dir(folder) and stat.S_IMODE(folder.stat().st_mode) & 0o077:
                # The folder is about to hold keys: nobody else may list or swap its files.
                folder.chmod(durable.PRIVATE_DIR_MODE)
            key = _new_key(set())
            _write(path, _serialize(key.id, (key,)), replace=False)
        except FileExistsError:
            raise KeyringError(
                f"keyring already exists: {path}; refusing to overwrite it"
            ) from None
        except OSError as exc:
            raise KeyringError(f"keyring {path} cannot be created: {exc.strerror}") from None
        return cls.load(path)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def active_id(self) -> str:
        """The key new documents are wrapped with, as the file says now."""
        return self._current().active_id

    @property
    def key_ids(self) -> list[str]:
        """All key ids, oldest first, as the file says now."""
        return [key.id for key in self._current().keys]

    def reload(self) -> None:
        """Re-read the file, e.g. after another process rotated keys."""
        if self._in_memory:
            return
        with self._lock:
            self._state = _read(self._path)

    def _current(self) -> _State:
        """The state, re-read first if the file changed since we read it.

        Wrapping with a stale active key would be worse than slow: if an operator rotated and
        then removed the old key in another process, documents sealed here afterwards would
        be wrapped with a key that no longer exists anywhere. One stat per seal prevents it.
        """
        state = self._state
        if self._in_memory:
            return state
        try:
            changed = _stamp(self._path.stat()) != state.stamp
        except OSError:
            changed = True  # gone or unreadable: let _read say exactly what is wrong
        if changed:
            self.reload()
            state = self._state
        return state

    def wrap(self, data_key: bytes, document_id: str) -> tuple[str, bytes]:
        """Encrypt a document's data key with the active KEK; returns (kek_id, wrapped).

        The associated data binds the document id and the KEK id, so a wrapped key copied
        onto another document's row does not open.
        """
        if len(data_key) != DATA_KEY_SIZE:
            raise VaultError(f"document {document_id}: a data key must be {DATA_KEY_SIZE} bytes")
        state = self._current()
        kek_id = state.active_id
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = state.ciphers[kek_id].encrypt(nonce, data_key, _wrap_aad(kek_id, document_id))
        return kek_id, bytes([_WRAP_VERSION]) + nonce + sealed

    def unwrap(self, kek_id: str, wrapped: bytes, document_id: str) -> bytes:
        """Recover a document's data key; IntegrityError if the wrapped key does not
        authenticate for this document and key id."""
        cipher = self._state.ciphers.get(kek_id)
        if cipher is None:
            # Another process may have rotated since we loaded: look again before failing.
            self.reload()
            cipher = self._state.ciphers.get(kek_id)
            if cipher is None:
                raise KeyringError(
                    f"unknown key id {kek_id!r} in keyring {self._path} "
                    f"(needed by document {document_id})"
                )
        if len(wrapped) != WRAPPED_KEY_SIZE or wrapped[0] != _WRAP_VERSION:
            raise IntegrityError(f"document {document_id}: the wrapped data key is malformed")
        nonce, sealed = wrapped[1 : 1 + _NONCE_SIZE], wrapped[1 + _NONCE_SIZE :]
        try:
            return cipher.decrypt(nonce, sealed, _wrap_aad(kek_id, document_id))
        except InvalidTag:
            raise IntegrityError(
                f"document {document_id}: the wrapped data key does not authenticate under "
                f"key {kek_id} (tampered, or belongs to another document)"
            ) from None

    @contextmanager
    def _exclusive(self) -> Iterator[_State]:
        """Hold the in-process and the cross-process lock, and yield the state on disk.

        Changes start from the file, never from our copy: starting from a stale copy would
        drop a key another process just added, and with it every document it wrapped.
        """
        if self._in_memory:
            raise KeyringError(f"keyring {self._path} is read-only (loaded from an export)")
        lock_path = self._path.with_name(f".{self._path.name}.lock")
        with self._lock:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise KeyringError(
                    f"keyring lock {lock_path} cannot be opened: {exc.strerror}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield _read(self._path)
            finally:
                os.close(fd)  # closing releases the flock

    def _save(self, active_id: str, keys: tuple[_Key, ...]) -> None:
        try:
            _write(self._path, _serialize(active_id, keys), replace=True)
        except OSError as exc:
            raise KeyringError(f"keyring {self._path} cannot be written: {exc.strerror}") from None
        self._state = _read(self._path)

    def add_key(self) -> str:
        """Generate a new KEK, make it the active one, save; returns its id."""
        with self._exclusive() as state:
            key = _new_key({k.id for k in state.keys})
            self._save(key.id, (*state.keys, key))
        return key.id

    def remove_key(self, kek_id: str) -> None:
        """Delete a KEK from the file. Refuses the active key.

        This does NOT check whether documents are still wrapped with the key: the keyring
        cannot know. The caller (records) must have rewrapped them all first, or they become
        unreadable for good.
        """
        with self._exclusive() as state:
            if kek_id == state.active_id:
                raise KeyringError(
                    f"refusing to remove key {kek_id}: it is the active key of keyring "
                    f"{self._path}; add a new key first"
                )
            remaining = tuple(k for k in state.keys if k.id != kek_id)
            if len(remaining) == len(state.keys):
                raise KeyringError(f"unknown key id {kek_id!r} in keyring {self._path}")
            self._save(state.active_id, remaining)


_cache: dict[Path, Keyring] = {}
_cache_lock = threading.Lock()


def get_keyring() -> Keyring:
    """The process-wide keyring of `settings.VIGIE_KEYRING_FILE`, loaded once per path."""
    # Imported here so the vault stays usable (and testable) without Django configured.
    from django.conf import settings

    path = Path(settings.VIGIE_KEYRING_FILE)
    with _cache_lock:
        keyring = _cache.get(path)
        if keyring is None:
            keyring = _cache[path] = Keyring.load(path)
        return keyring
