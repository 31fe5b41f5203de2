"""Helpers the management commands share that belong to no app."""

from __future__ import annotations

import getpass


def command_operator() -> str:
    """Who runs this command, as the audit trail and the alerts name them: `cli:<login>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "cli"
