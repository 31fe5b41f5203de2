"""A benchmark's figure beside the one it replaces (issue 20: "with the ratio to the previous
figures"). Rates move with the machine's load and its disk, so the CPU per operation, the
steadier figure on a shared machine, is kept beside the rate when the last run had one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def last_run(path: Path) -> dict[str, Any]:
    """The figures a previous run left in `path`, or {} (none yet, or unreadable)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def compare(result: dict[str, Any], last: Any, rate: str, kept: tuple[str, ...] = ()) -> None:
    """Add to `result` the previous run's figures (`last`: its `rate` and those of `kept` it
    has) as "previous", and "ratio_to_previous", the new `rate` over the old. Nothing when
    `last` holds no positive `rate` (the first run, a run that skipped this stage)."""
    if not isinstance(last, dict):
        return
    try:
        before = float(last[rate])
    except (KeyError, TypeError, ValueError):
        return
    if before <= 0:
        return
    previous = {rate: before, **{key: last[key] for key in kept if key in last}}
    result["previous"] = previous
    result["ratio_to_previous"] = float(result[rate]) / before
