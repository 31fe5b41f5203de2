"""WSGI entry point (granian loads `vigie.wsgi:application`)."""

from __future__ import annotations

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")

from vigie.lib.env import ConfigError
from vigie.startup import StartupError, preflight, restrict_umask

# Before preflight creates VIGIE_HOME or opens the database: files private whoever starts us.
restrict_umask()
try:
    preflight()
except (ConfigError, StartupError) as exc:
    # Refuse to serve at all rather than serve half-configured.
    print(f"vigie: error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

application = get_wsgi_application()
