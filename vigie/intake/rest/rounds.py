"""Group commit for REST uploads: concurrent requests of one process share a transaction.

`receive()` pays, for every document, one database commit (a fsync of the database) and one
audit batch, one request after the other (SQLite has one writer). Here each request first
prepares its own upload in its own thread, as `records.batch.prepare_round` does (checked,
matched, sealed, its blob fsynced — these waits overlap across requests), then hands it to
the process's `GroupCommit`: the request that finds no commit in progress leads one, and
commits with `records.batch.commit_rounds` every prepared upload waiting at that moment, its
own included — one transaction, one audit batch, one fsync of the database for all of them. The
requests that arrive meanwhile wait; when that commit is done, the first of them leads the
next with everything that arrived. A request alone (the usual case at low load) commits
alone, exactly as `receive()` would.

Nothing is weakened: every blob is durable before a row names it, and each request answers
only after the transaction that holds its row, its `within` records and its audit events
has committed, with its own outcome. An upload that fails (refused, a conflicting
Idempotency-Key, an audit log that refuses) fails alone: the others are then committed one
transaction each.

No thread of its own: the leader is a request thread (so Django's per-request connection
handling and the test client's transactions stay as they are), and a follower sleeps on an
event, releasing the interpreter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vigie.records.batch import Arrival, Round, commit_round, commit_rounds, prepare_round
from vigie.records.receive import Received

_Item = TypeVar("_Item")

# Uploads per commit at most: a bound on one transaction and on what a leader's own answer
# waits for.
ROUND_UPLOADS = 16


@dataclass
class _Slot(Generic[_Item]):
    item: _Item
    ready: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    outcome: Received | BaseException | None = None


class GroupCommit(Generic[_Item]):
    """The items waiting in this process, and who leads the round that `work`s them."""

    def __init__(
        self,
        work: Callable[[list[_Item]], Sequence[Received | Exception]],
        round_items: int = ROUND_UPLOADS,
    ) -> None:
        self.work = work
        self.round_items = round_items
        self._lock = threading.Lock()
        self._waiting: list[_Slot[_Item]] = []
        # Invariant: items wait only while a round is led (its leader hands on to them).
        self._leading = False

    def submit(self, item: _Item) -> Received:
        """`item`'s outcome, worked in a round with the items of other threads waiting at
        the same moment (an exception is raised here, in the thread it belongs to)."""
        slot = _Slot(item)
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
            batch = self._waiting[: self.round_items]
            del self._waiting[: len(batch)]
        outcomes: list[Received | BaseException]
        try:
            outcomes = list(self.work([slot.item for slot in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError("internal error: a round answered for another number of items")
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


def _commit(prepared: list[Round]) -> list[Received | Exception]:
    return [outcomes[0] for outcomes in commit_rounds(prepared)]


# One per process: a granian worker's request threads share it.
_commits: GroupCommit[Round] = GroupCommit(_commit)


def receive(arrival: Arrival) -> Received:
    """Store `arrival` as `receive()` would (same outcome, same exceptions): prepared in
    this thread, committed with the uploads of other threads ready at the same moment."""
    prepared = prepare_round([arrival])
    if not prepared.ready:  # refused or not sealed: nothing to commit, answer at once
        outcome = commit_round(prepared)[0]  # its outcome (the refusal), its group closed
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return _commits.submit(prepared)
