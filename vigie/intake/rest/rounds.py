"""Group commit for REST uploads: concurrent requests of one process share a round.

`receive()` pays, for every document, two file fsyncs, one database commit (a fsync of the
database) and one audit batch. Under load a REST worker serves several uploads at once, each
in its own thread: here the request that finds no round in progress leads one, and stores
with `records.batch.receive_many` every upload waiting at that moment, its own included —
one round of blob fsyncs, one transaction, one audit batch for all of them. The requests
that arrive meanwhile wait; when the round is done, the first of them leads the next round
with everything that arrived. A request alone (the usual case at low load) leads a round of
one, which stores exactly as `receive()` does.

Nothing is weakened: `receive_many` checks, matches and seals each document as `receive()`
does, makes every blob durable before any row names it, and returns only once the round's
transaction (rows, the channel's `within` records, the audit events) is committed; each
request answers only after that, with its own outcome. One upload that fails (refused,
a conflicting Idempotency-Key, an audit log that refuses) fails alone: `receive_many` then
commits the others one transaction each.

No thread of its own: the leader is a request thread (so Django's per-request connection
handling and the test client's transactions stay as they are), and a follower sleeps on an
event, releasing the interpreter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vigie.records.batch import Arrival, receive_many
from vigie.records.receive import Received

# Uploads per round at most: a bound on one transaction and on what a leader's own answer
# waits for (each upload is at most VIGIE_MAX_DOCUMENT_SIZE, and held in memory anyway).
ROUND_UPLOADS = 16


@dataclass
class _Slot:
    arrival: Arrival
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    outcome: Received | BaseException | None = None


class Rounds:
    """The uploads waiting in this process, and who leads the round that stores them."""

    def __init__(
        self,
        round_uploads: int = ROUND_UPLOADS,
        store: Callable[[list[Arrival]], Sequence[Received | Exception]] = receive_many,
    ) -> None:
        self.round_uploads = round_uploads
        # What stores a round: `receive_many` (another function only in tests of the rounds).
        self.store = store
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        # Invariant: uploads wait only while a round is led (its leader hands on to them).
        self._leading = False

    def receive(self, arrival: Arrival) -> Received:
        """Store `arrival` as `receive()` would (same outcome, same exceptions), in a round
        with the uploads of other threads waiting at the same moment."""
        slot = _Slot(arrival)
        with self._lock:
            self._waiting.append(slot)
            slot.lead = not self._leading
            self._leading = True
        if not slot.lead:
            slot.ready.wait()
        if slot.lead:  # first here, or handed the next round by the previous leader
            self._lead()
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        if slot.outcome is None:  # every round sets one; guard against a silent gap
            raise RuntimeError("internal error: an upload of the round has no outcome")
        return slot.outcome

    def _lead(self) -> None:
        with self._lock:
            batch = self._waiting[: self.round_uploads]
            del self._waiting[: len(batch)]
        outcomes: list[Received | BaseException]
        try:
            outcomes = list(self.store([slot.arrival for slot in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError("internal error: a round answered for another number of uploads")
        except BaseException as exc:  # each waiting request must get an answer: this one
            outcomes = [exc] * len(batch)
        finally:
            with self._lock:
                # Whoever arrived during this round leads the next one; the leader itself
                # goes back to answer its own request.
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].ready.set()
                else:
                    self._leading = False
        for slot, outcome in zip(batch, outcomes, strict=True):
            slot.lead = False
            slot.outcome = outcome
            slot.ready.set()


# One per process: a granian worker's request threads share it.
rounds = Rounds()
