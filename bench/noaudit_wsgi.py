"""Benchmark build ONLY: Vigie with the audit of document reads switched off.

Issue 4 asks what the audit costs a fetch ("compare with the log disabled in a benchmark
build only"). This entry point exists under bench/, is never installed with the package and
is loaded only by bench/fetch.py's granian command; the product has no setting that disables
the audit. It replaces the `record` that the one door calls with a no-op, nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

from vigie.wsgi import application

# Imported after vigie.wsgi, which runs the preflight and sets Django up for door's models.
door = importlib.import_module("vigie.portal.door")


def _no_audit(*args: Any, **kwargs: Any) -> None:
    return None


setattr(door, "record", _no_audit)  # noqa: B010 - replacing a module global on purpose

__all__ = ["application"]
