"""The `vigie` command: Django's management commands behind a preflight.

Configuration mistakes end with `vigie: error: <one line>` and exit code 2, never a
traceback: the person running this is often a clinic's IT technician at 2 a.m.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

# Commands that must run before a keyring or database exists, or only print.
_NO_PREFLIGHT = {"help", "--help", "-h", "version", "--version"}


def _fail(message: object) -> NoReturn:
    print(f"vigie: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
    # First, before anything (settings, a database connection) can create a file.
    from vigie.startup import restrict_umask

    restrict_umask()
    from vigie.lib.env import ConfigError
    from vigie.vault.errors import VaultError

    command = args[0] if args else "help"
    try:
        from django.conf import settings

        from vigie.startup import StartupError, bootstrap_home, preflight

        settings.VIGIE_MODE  # noqa: B018 - import settings now so bad values fail here
        if command == "demo":
            if settings.VIGIE_MODE != "demo":
                _fail("`vigie demo` needs VIGIE_MODE=demo (it seeds a synthetic clinic)")
            bootstrap_home()
        # These build what preflight would demand (keys init, init, restore), report on it
        # instead of dying of it (check), repair what it refuses (keys move: keys left in the
        # data tree), or run where only a backup and a keys export are (backup verify).
        if (
            command in {"check", "init"}
            or (command == "keys" and args[1:2] in (["init"], ["move"]))
            or (command == "backup" and args[1:2] in (["restore"], ["verify"]))
        ):
            import django

            django.setup()
        elif command == "serve":
            # Every refusal, without loading the applications: the parent only execs granian,
            # and the worker loads them (and runs Django's system checks) before it serves.
            preflight(apps=False)
        elif command not in _NO_PREFLIGHT:
            preflight()
    except (ConfigError, StartupError, VaultError) as exc:
        _fail(exc)

    if command == "serve":
        from vigie.ops.management.commands.serve import Command as Serve

        try:
            Serve().run_from_argv(["vigie", *args])
        except (ConfigError, VaultError) as exc:
            _fail(exc)
        return

    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(["vigie", *args])
    except (ConfigError, VaultError) as exc:
        _fail(exc)


if __name__ == "__main__":
    main()
