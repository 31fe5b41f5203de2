"""Settings for the test suite: vigie.settings in test mode, in a throwaway VIGIE_HOME.

pytest-django imports the settings before any conftest runs, so the environment must be set
here, not in conftest.py. Nothing else differs from vigie.settings: the suite tests the one
settings module, read the way production reads it.
"""

from __future__ import annotations

import os
import tempfile

os.environ["VIGIE_MODE"] = "test"
os.environ["VIGIE_HOME"] = tempfile.mkdtemp(prefix="vigie-test-home-")
# The keys apart from the data, as in production (never /etc/vigie/keys from a test).
os.environ["VIGIE_KEYS_DIR"] = tempfile.mkdtemp(prefix="vigie-test-keys-")
for _name in (
    "CREDENTIALS_DIRECTORY",
    "VIGIE_SECRET_KEY",
    "VIGIE_SECRET_KEY_FILE",
    "VIGIE_BLOB_DIR",
    "VIGIE_KEYRING_DIR",
    "VIGIE_DEBUG",
    "VIGIE_TLS",
    "VIGIE_SSL_REDIRECT",
):
    os.environ.pop(_name, None)

from vigie.settings import *  # noqa: E402, F403
