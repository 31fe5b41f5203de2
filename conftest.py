"""Test-wide fixtures. The environment (test mode, throwaway VIGIE_HOME) is set by
tests/settings.py, which pytest-django loads before any conftest."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _vigie_home() -> Path:
    from django.conf import settings

    from vigie.startup import bootstrap_home

    assert settings.VIGIE_MODE == "test", "the suite must never run against a real VIGIE_HOME"
    bootstrap_home()
    return Path(settings.VIGIE_HOME)


@pytest.fixture(autouse=True)
def _log_handlers_left_writable() -> Iterator[None]:
    """Fails the test that leaves the root logger writing to a stream closed after it.

    Django's setup binds the root's console handler (settings.LOGGING) to the sys.stderr of
    that moment; a test that sets Django up again (importing vigie.wsgi, calling
    django.setup()) under capsys or capfd leaves it on the test's capture, closed at teardown,
    and every record logged later in the session fails ("--- Logging error ---") in other
    tests. Autouse and in the root conftest, so this runs after the test's own fixtures
    (capsys included) are torn down. The root only: every Vigie and Django record ends there;
    a library's own handler on a closed stream (pyasn1 binds one at import, and never logs
    unless debugging is on) is not this test's concern.
    """
    yield
    closed = [
        handler
        for handler in logging.getLogger().handlers
        if getattr(getattr(handler, "stream", None), "closed", False)
    ]
    assert not closed, f"the root logger's handlers left on a closed stream: {closed}"


@pytest.fixture
def vault_home(tmp_path: Path, settings: pytest.FixtureRequest) -> Path:
    """A private blob store and keyring for one test (isolated from other tests' blobs).

    VIGIE_HOME is `tmp_path`; the keys are in a folder beside it, never in it (see
    vigie/vault/layout.py), as `vault_keys_dir(home)` says.
    """
    from vigie.vault.kek_store import Keyring

    keys = vault_keys_dir(tmp_path)
    settings.VIGIE_HOME = tmp_path  # type: ignore[attr-defined]
    settings.VIGIE_BLOB_DIR = tmp_path / "blobs"  # type: ignore[attr-defined]
    settings.VIGIE_KEYS_DIR = keys  # type: ignore[attr-defined]
    settings.VIGIE_KEYRING_FILE = keys / "keyring.json"  # type: ignore[attr-defined]
    settings.VIGIE_SECRET_KEY_DEFAULT_FILE = keys / "secret_key"  # type: ignore[attr-defined]
    Keyring.create(keys / "keyring.json")
    return tmp_path


def vault_keys_dir(home: Path) -> Path:
    """The keys folder of a test's VIGIE_HOME: its sibling, as in the demo (var -> var-keys)."""
    return home.with_name(f"{home.name}-keys")


@pytest.fixture
def netns() -> Iterator[str]:
    """Real nftables in a throwaway network namespace (vigie/guard/testing.py)."""
    from vigie.guard.testing import netns_supported, network_namespace

    reason = netns_supported()
    if reason is not None:
        # CI runs as root with the packages installed: there this fails, never skips.
        pytest.fail(f"this test needs a network namespace: {reason}")
    with network_namespace() as name:
        yield name


@pytest.fixture
def audit_committing(transactional_db: None) -> Iterator[None]:
    """`record()` really commits, append-only triggers armed (vigie/audit/testing.py):
    request it instead of `transactional_db`."""
    from vigie.audit.testing import appending_for_real

    with appending_for_real():
        yield
