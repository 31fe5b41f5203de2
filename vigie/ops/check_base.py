"""What every check of `vigie check` shares: the statuses, `Finding` and `Context`.

The checks themselves are in `checks.py` (settings, keys, TLS), `checks_storage.py` (the
database and the data folders) and `checks_services.py` (guard, intake, backups, audit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.utils import timezone

Status = Literal["ok", "warning", "failure"]
OK: Status = "ok"
WARNING: Status = "warning"
FAILURE: Status = "failure"


@dataclass(frozen=True)
class Finding:
    id: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status, "message": self.message, "fix": self.fix}


@dataclass
class Context:
    """What the checks share: one `now`, the command's options, and what earlier checks found."""

    now: datetime = field(default_factory=timezone.now)
    # `vigie check --behind-proxy ADDR,...`: the proxies `vigie serve --behind-proxy` was given.
    behind_proxy: list[str] = field(default_factory=list)
    # Set by the database checks; the checks that read tables need both.
    database_reachable: bool = False
    database_migrated: bool = False
    policy: Any = None  # vigie.guard.policy.Policy once the policy check loaded it


Check = Callable[[Context], "Finding | list[Finding]"]


def needs_database(ctx: Context, check_id: str) -> Finding | None:
    if ctx.database_reachable and ctx.database_migrated:
        return None
    why = "unreachable" if not ctx.database_reachable else "not migrated"
    return Finding(check_id, WARNING, f"not checked: the database is {why} (see above)")
