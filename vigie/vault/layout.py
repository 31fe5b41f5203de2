"""Where the key material lives, and the rule that it never lies beside the data.

Encryption at rest protects nothing when the keys that open the blobs sit in the same tree as
the blobs: a `python3 -m http.server` started in VIGIE_HOME during maintenance handed a
stranger the blobs *and* the keyring. So the keyring, the secret key and the audit signing key
live in their own folder (VIGIE_KEYS_DIR, /etc/vigie/keys in production) or come from systemd
credentials, and Vigie refuses to start when any of them is inside a folder that holds or
serves data. Paths are compared resolved: a symlink into VIGIE_HOME counts as inside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from vigie.lib import durable

KEYRING_NAME = "keyring.json"
SECRET_KEY_NAME = "secret_key"  # noqa: S105 - a file name, not a secret
SIGNING_KEY_NAME = "audit-signing.key"
# The file names of the key material, in the keys folder and as systemd credential names.
KEY_FILE_NAMES = (KEYRING_NAME, SECRET_KEY_NAME, SIGNING_KEY_NAME)
# Where releases before the split kept them (VIGIE_HOME/keyring/): files left there are found
# even when the settings point elsewhere, because serving VIGIE_HOME would still give them away.
LEGACY_FOLDER_NAME = "keyring"

SOURCE_DIRECTORY = "keys directory"
SOURCE_CREDENTIALS = "systemd credentials"


@dataclass(frozen=True)
class MisplacedKey:
    path: Path
    folder_label: str
    folder: Path

    def __str__(self) -> str:
        return f"{self.path} is inside {self.folder_label} {self.folder}"


def data_folders() -> list[tuple[str, Path]]:
    """The folders that hold or may serve data: key material must be in none of them.

    The narrowest first, so a refusal names the most telling one (MEDIA_ROOT is in VIGIE_HOME).
    """
    return [
        ("the blob store (VIGIE_BLOB_DIR)", Path(settings.VIGIE_BLOB_DIR)),
        ("the web root (STATIC_ROOT)", Path(settings.STATIC_ROOT)),
        ("the web root (MEDIA_ROOT)", Path(settings.MEDIA_ROOT)),
        ("VIGIE_HOME", Path(settings.VIGIE_HOME)),
    ]


def key_paths() -> list[Path]:
    """Every file of key material this installation is configured to use."""
    paths = [
        Path(settings.VIGIE_KEYRING_FILE),
        Path(settings.VIGIE_KEYS_DIR) / SIGNING_KEY_NAME,
    ]
    paths.append(Path(settings.VIGIE_SECRET_KEY_FILE or settings.VIGIE_SECRET_KEY_DEFAULT_FILE))
    return paths


def legacy_key_files(home: Path | None = None) -> list[Path]:
    """Key files left where the old layout put them (VIGIE_HOME/keyring/ or VIGIE_HOME/)."""
    home = Path(settings.VIGIE_HOME) if home is None else home
    found = []
    for folder in (home / LEGACY_FOLDER_NAME, home):
        for name in KEY_FILE_NAMES:
            candidate = folder / name
            if os.path.lexists(candidate):
                found.append(candidate)
    return found


def _inside(path: Path, folder: Path) -> bool:
    # resolve(): symlinks (of the file, of its folder, or of the data folder) are followed, so
    # /etc/vigie/keys -> /var/lib/vigie/keys is caught; a path that does not exist yet resolves
    # as far as it can, which is what the file would be once created.
    return path.resolve().is_relative_to(folder.resolve())


def misplaced_keys() -> list[MisplacedKey]:
    """Key material (configured or left over) inside a data folder; empty when all is well."""
    found: list[MisplacedKey] = []
    seen: set[Path] = set()
    folders = data_folders()
    for path in [*key_paths(), *legacy_key_files()]:
        resolved = path.resolve()
        if resolved in seen:
            continue
        for label, folder in folders:
            if _inside(path, folder):
                # Configured paths count even before the file exists: the keys would be
                # created there. Left-over files count because they exist.
                found.append(MisplacedKey(path, label, folder))
                seen.add(resolved)
                break
    return found


def keys_source() -> str:
    """SOURCE_CREDENTIALS when the keys come from $CREDENTIALS_DIRECTORY, else the folder."""
    return str(settings.VIGIE_KEYS_SOURCE)


def refusal_message(misplaced: list[MisplacedKey]) -> str:
    first = misplaced[0]
    more = f" (and {len(misplaced) - 1} more)" if len(misplaced) > 1 else ""
    return (
        f"key material {first}{more}: whoever copies or serves that folder can decrypt the "
        f"documents; move the keys out with `vigie keys move /etc/vigie/keys` and set "
        f"VIGIE_KEYS_DIR (see docs/operations.md)"
    )


def make_keys_dir(path: Path) -> None:
    """Create the keys folder (0700) and, open to traversal (0755), any missing parent.

    A parent such as /etc/vigie must stay traversable by the `vigie` user, whatever umask the
    creating command runs under (`vigie init` sets 077): only the keys folder itself is private.
    """
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        folder.chmod(0o755)
    durable.make_private_dir(path)


def is_inside_data(path: Path) -> tuple[str, Path] | None:
    """The data folder `path` is inside (resolved), or None."""
    for label, folder in data_folders():
        if _inside(path, folder):
            return label, folder
    return None
