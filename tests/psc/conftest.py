from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.psc.process import ProviderProcess

CALLBACK = "http://testserver/accounts/psc/callback/"


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderProcess]:
    """A PSC-shaped OpenID provider on loopback, its own process, for the Django test client."""
    process = ProviderProcess(CALLBACK)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def _psc_settings(settings: Any, provider: ProviderProcess) -> None:
    settings.SECURE_SSL_REDIRECT = False
    settings.VIGIE_MODE = "test"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for name, value in provider.settings().items():
        setattr(settings, name, value)
