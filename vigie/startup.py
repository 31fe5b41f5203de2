"""Preflight: refuse to start, with one line that says why, rather than run half-configured.

Called by the `vigie` command, `manage.py` and the WSGI entry point before anything is served.
Production never creates its own secrets; `bootstrap_home()` does, and only when asked
(`vigie keys init`) or in demo and test modes.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from vigie.lib import durable
from vigie.lib.env import ConfigError
from vigie.vault import layout
from vigie.vault.errors import KeyringError
from vigie.vault.kek_store import Keyring


class StartupError(Exception):
    """Vigie cannot start; the message is one line naming what to fix."""


_MIN_SECRET_KEY_LENGTH = 50


# Everything Vigie writes (database, blobs, logs, exports) is for its own user: systemd's
# UMask=0077 says so in production, and this says it wherever else Vigie is started (by hand,
# cron, a container), where the inherited umask is typically 022 (database 0644, folders 0755).
PRIVATE_UMASK = 0o077


def restrict_umask() -> None:
    """Make every file and folder this process creates private to the Vigie user."""
    os.umask(PRIVATE_UMASK)


def _check_home(home: Path) -> None:
    try:
        # 0700 whatever the umask; an existing folder is left as it is (`vigie check` reports
        # one that others can read, with the chmod that fixes it).
        durable.make_private_dir(home)
        # os.access() lies for root; only a real write proves the folder is writable.
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        raise StartupError(f"VIGIE_HOME={home} is not writable ({exc.strerror or exc})") from None


def _check_not_restoring(home: Path) -> None:
    # Left by `vigie backup restore` until the restored installation has been verified: a
    # half-restored portal must not serve.
    marker = home / "RESTORING"
    if marker.exists():
        raise StartupError(
            f"{marker} exists: a restore did not finish or did not verify; "
            "restore again into an empty VIGIE_HOME"
        )


def _check_keys_apart() -> None:
    # Before anything reads a key: an installation that keeps its keys in the data tree must
    # not serve another request until they are moved out (`vigie keys move`).
    misplaced = layout.misplaced_keys()
    if misplaced:
        raise StartupError(layout.refusal_message(misplaced))


def _check_secret_key() -> None:
    if not settings.VIGIE_SECRET_KEY_CONFIGURED:
        raise StartupError(
            "no secret key: set VIGIE_SECRET_KEY_FILE (or VIGIE_SECRET_KEY), "
            f"or create {settings.VIGIE_SECRET_KEY_DEFAULT_FILE} with `vigie keys init`"
        )
    length = len(settings.SECRET_KEY)
    if settings.PRODUCTION and length < _MIN_SECRET_KEY_LENGTH:
        raise StartupError(
            f"the secret key is too short ({length} characters, need {_MIN_SECRET_KEY_LENGTH})"
        )


def _check_keyring() -> None:
    path = Path(settings.VIGIE_KEYRING_FILE)
    blob_dir = Path(settings.VIGIE_BLOB_DIR).resolve()
    if path.resolve().is_relative_to(blob_dir):
        raise StartupError(f"the keyring {path} is inside the blob store {blob_dir}: move it out")
    try:
        Keyring.load(path)
    except KeyringError as exc:
        hint = " (run `vigie keys init`)" if not path.exists() else ""
        raise StartupError(f"{exc}{hint}") from None


def _check_blob_store() -> None:
    """An S3 store must answer and refuse overwrites (probed once) before anything is served."""
    if settings.VIGIE_BLOB_STORE != "s3":
        return
    from vigie.vault import VaultError, get_blob_store

    try:
        get_blob_store()
    except VaultError as exc:
        raise StartupError(f"the blob store: {exc}") from None


def redact_url(url: str) -> str:
    """A database URL without its password, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # The servers as written: `parts.port` raises for libpq's list `h1:5432,h2:5432`.
    servers = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:***@{servers}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _check_database() -> None:
    from django.db import connection

    try:
        connection.ensure_connection()
    except Exception as exc:  # every driver has its own error types; all mean "unreachable"
        where = redact_url(
            os.environ.get("DATABASE_URL", "") or str(connection.settings_dict["NAME"])
        )
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StartupError(f"cannot reach the database {where}: {first_line}") from None


def preflight(*, database: bool = True, apps: bool = True) -> None:
    """Every check that must pass before Vigie serves or changes anything.

    `apps=False` checks the same things without loading Django's applications (a third of
    a second of CPU): `vigie serve` only execs granian, whose workers load them anyway.
    """
    import django

    try:
        mode = settings.VIGIE_MODE
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    del mode
    _check_home(Path(settings.VIGIE_HOME))
    _check_not_restoring(Path(settings.VIGIE_HOME))
    _check_keys_apart()
    _check_secret_key()
    _check_keyring()
    _check_blob_store()
    if apps:
        django.setup()
    if database:
        _check_database()


def bootstrap_home() -> list[Path]:
    """Create the secret key, keyring and audit signing key if absent, in the keys folder
    (files 0600, folder 0700), apart from VIGIE_HOME; return what was made.

    Never overwrites: an existing keyring holds the only copy of the keys to the documents.
    Refuses to create keys inside the data tree, and to create any when they come from systemd
    credentials (that folder is systemd's, read-only; the keys are made on the host and
    encrypted with `systemd-creds encrypt`).
    """
    from vigie.audit.checkpoints import ensure_signing_key, signing_key_path

    created: list[Path] = []
    home = Path(settings.VIGIE_HOME)
    _check_home(home)
    _check_keys_apart()
    keys_dir = Path(settings.VIGIE_KEYS_DIR)
    key_file = Path(settings.VIGIE_SECRET_KEY_DEFAULT_FILE)
    keyring_file = Path(settings.VIGIE_KEYRING_FILE)
    if settings.VIGIE_KEYS_SOURCE == layout.SOURCE_CREDENTIALS:
        wanted = [keyring_file, signing_key_path()]
        if not settings.VIGIE_SECRET_KEY_CONFIGURED:
            wanted.append(key_file)
        missing = [path.name for path in wanted if not path.exists()]
        if missing:
            raise StartupError(
                f"the systemd credentials in {keys_dir} lack {', '.join(missing)}: create the "
                "keys in a keys folder (`vigie keys init`), then `systemd-creds encrypt` each "
                "one (docs/operations.md)"
            )
        return created
    layout.make_keys_dir(keys_dir)
    if not settings.VIGIE_SECRET_KEY_CONFIGURED and not key_file.exists():
        durable.write_new(key_file, [secrets.token_urlsafe(64).encode("ascii")])
        created.append(key_file)
    if not settings.VIGIE_SECRET_KEY_CONFIGURED:
        settings.SECRET_KEY = key_file.read_text(encoding="utf-8").strip()
        settings.VIGIE_SECRET_KEY_CONFIGURED = True
    if not keyring_file.exists():
        Keyring.create(keyring_file)
        created.append(keyring_file)
    if ensure_signing_key():
        created.append(signing_key_path())
    return created
