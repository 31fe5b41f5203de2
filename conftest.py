"""Test-wide setup: every run gets its own VIGIE_HOME with a fresh keyring, in test mode.

The environment is set at import time, before pytest-django imports the settings module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="vigie-test-home-"))
os.environ["VIGIE_MODE"] = "test"
os.environ["VIGIE_HOME"] = str(_HOME)
for _name in ("VIGIE_SECRET_KEY", "VIGIE_SECRET_KEY_FILE", "VIGIE_BLOB_DIR", "VIGIE_KEYRING_DIR"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session", autouse=True)
def _vigie_home() -> Path:
    from vigie.startup import bootstrap_home

    bootstrap_home()
    return _HOME


@pytest.fixture
def vault_home(tmp_path: Path, settings: pytest.FixtureRequest) -> Path:
    """A private blob store and keyring for one test (isolated from other tests' blobs)."""
    from vigie.vault.keyring import Keyring

    settings.VIGIE_HOME = tmp_path  # type: ignore[attr-defined]
    settings.VIGIE_BLOB_DIR = tmp_path / "blobs"  # type: ignore[attr-defined]
    settings.VIGIE_KEYRING_DIR = tmp_path / "keyring"  # type: ignore[attr-defined]
    settings.VIGIE_KEYRING_FILE = tmp_path / "keyring" / "keyring.json"  # type: ignore[attr-defined]
    Keyring.create(tmp_path / "keyring" / "keyring.json")
    return tmp_path
