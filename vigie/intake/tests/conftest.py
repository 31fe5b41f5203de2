"""The intake tests read messages in English, whatever the French catalog holds: they test
what is said, and vigie/lib/tests/test_translations.py tests that it is said in French too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import translation


@pytest.fixture(autouse=True)
def _english(settings: pytest.FixtureRequest) -> Iterator[None]:
    # LANGUAGE_CODE for pages (LocaleMiddleware's fallback), override() for commands.
    settings.LANGUAGE_CODE = "en"  # type: ignore[attr-defined]
    with translation.override("en"):
        yield
