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


def _refuse_on_system_check_errors() -> None:
    """Django's system checks, which `vigie serve` no longer runs before exec'ing granian.

    Errors stop the worker (granian then stops, exit code 1) with the same one-line refusal;
    warnings are printed, as a management command would.
    """
    from django.core import checks

    messages = [m for m in checks.run_checks() if not m.is_silenced()]
    for message in messages:
        if not message.is_serious():
            print(f"vigie: warning: {message}", file=sys.stderr)
    serious = [m for m in messages if m.is_serious()]
    if serious:
        print(f"vigie: error: {'; '.join(str(m) for m in serious)}", file=sys.stderr)
        raise SystemExit(2)


_refuse_on_system_check_errors()
