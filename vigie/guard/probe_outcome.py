"""What one probe round found: its result rows, sorted by verdict, and its second look.

Shared by the modules that judge a round (probe_judge, probe_ports), ask again about its
ports (probe_recheck) and act on it (probe_react); it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vigie.guard.models import ProbeResult

Verdict = ProbeResult.Verdict


@dataclass
class Recheck:
    """What the vantage point saw when asked again about the ports a round found reachable."""

    seen_at: datetime  # when the round's fetcher reported them reachable
    checked_at: datetime
    still_open: list[str]  # host:port targets
    closed: list[str]
    error: str = ""  # the fetcher failed: nothing confirms the ports closed

    @property
    def closed_now(self) -> bool:
        return not self.error and not self.still_open


@dataclass
class ProbeRound:
    round_id: str
    results: list[ProbeResult] = field(default_factory=list)
    leaks: list[ProbeResult] = field(default_factory=list)
    warnings: list[ProbeResult] = field(default_factory=list)
    errors: list[ProbeResult] = field(default_factory=list)
    # Leaks that only show the portal reachable (result url → the host:port it answered on);
    # a leak not in here disclosed something.
    reachable: dict[str, str] = field(default_factory=dict)
    recheck: Recheck | None = None
    lockdown_engaged: bool = False

    @property
    def only_reachability(self) -> bool:
        return bool(self.leaks) and all(r.url in self.reachable for r in self.leaks)

    def sort_by_verdict(self) -> None:
        """File every result among the leaks, warnings or errors its verdict makes it."""
        for result in self.results:
            bucket = {
                Verdict.LEAK: self.leaks,
                Verdict.WARNING: self.warnings,
                Verdict.ERROR: self.errors,
            }.get(Verdict(result.verdict))
            if bucket is not None:
                bucket.append(result)


def result_row(
    round_id: str, at: datetime, url: str, category: str, status: Any, verdict: str, detail: str
) -> ProbeResult:
    return ProbeResult(
        checked_at=at,
        round_id=round_id,
        url=url[:500],
        category=category[:32],
        status=status if isinstance(status, int) else None,
        verdict=verdict,
        detail=detail[:500],
    )
