"""Test-wide fixtures. The environment (test mode, throwaway VIGIE_HOME) is set by
tests/settings.py, which pytest-django loads before any conftest."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _vigie_home() -> Path:
    from django.conf import settings

    from vigie.startup import bootstrap_home

    assert settings.VIGIE_MODE == "test", "the suite must never run against a real VIGIE_HOME"
    bootstrap_home()
    return Path(settings.VIGIE_HOME)


@pytest.fixture
def vault_home(tmp_path: Path, settings: pytest.FixtureRequest) -> Path:
    """A private blob store and keyring for one test (isolated from other tests' blobs)."""
    from vigie.vault.kek_store import Keyring

    settings.VIGIE_HOME = tmp_path  # type: ignore[attr-defined]
    settings.VIGIE_BLOB_DIR = tmp_path / "blobs"  # type: ignore[attr-defined]
    settings.VIGIE_KEYRING_DIR = tmp_path / "keyring"  # type: ignore[attr-defined]
    settings.VIGIE_KEYRING_FILE = tmp_path / "keyring" / "keyring.json"  # type: ignore[attr-defined]
    Keyring.create(tmp_path / "keyring" / "keyring.json")
    return tmp_path


# Real nftables in a throwaway network namespace (vigie/guard/testing.py).
from vigie.guard.testing import netns  # noqa: E402, F401
