"""Signal receivers of the guard.

The canary tripwire listens to every durable audit event: whatever path touched a decoy
patient (portal refusal, break-the-glass, admin, intake, API) recorded it, so it trips.
"""

from __future__ import annotations

from vigie.audit.log import event_recorded
from vigie.guard.tripwire import on_event_recorded

event_recorded.connect(on_event_recorded, dispatch_uid="vigie.guard.tripwire")
