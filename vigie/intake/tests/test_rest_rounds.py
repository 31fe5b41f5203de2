"""REST uploads in rounds (`intake.rest.rounds`): who leads, who waits, who gets what.

The rounds are driven here by a stand-in for the commit (`batch.commit_rounds`) that records each round and
answers each upload with its own outcome, so that the hand-over between request threads is
checked alone; the storing itself is `records.batch`'s (its own tests), and every view test
in test_rest.py goes through a round of one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date

import pytest

from vigie.intake.rest.rounds import GroupCommit
from vigie.records.batch import Arrival
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import InvalidDocument
from vigie.records.receive import Received, Sender

pytestmark = pytest.mark.sqlite_only  # no database: the same on both passes

WAIT = 30.0  # seconds: only a bound on a hang, never a measurement


def arrival(name: str) -> Arrival:
    meta = DocumentMeta(
        kind="lab_result", title=name, clinical_date=date(2026, 1, 1), source_system="LAB"
    )
    return Arrival(Sender(ipp="1"), meta, name.encode(), "rest")


class Store:
    """Records each round's titles; the first round blocks until `release` is set."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.release = threading.Event()
        self.first_started = threading.Event()

    def __call__(self, arrivals: list[Arrival]) -> Sequence[Received | Exception]:
        self.rounds.append([a.meta.title for a in arrivals])
        if len(self.rounds) == 1:
            self.first_started.set()
            if not self.release.wait(WAIT):
                raise AssertionError("the first round was never released")
        return [
            InvalidDocument(f"refused {a.meta.title}")
            if a.meta.title.startswith("bad")
            else Received(warnings=[a.meta.title])
            for a in arrivals
        ]


def submit(rounds: GroupCommit[Arrival], name: str, answers: dict[str, object]) -> threading.Thread:
    def run() -> None:
        try:
            answers[name] = rounds.submit(arrival(name)).warnings
        except Exception as exc:  # the outcome this upload gets, for the assertions
            answers[name] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def waiting(rounds: GroupCommit[Arrival], count: int) -> None:
    event = threading.Event()
    for _ in range(int(WAIT * 100)):
        with rounds._lock:
            if len(rounds._waiting) == count:
                return
        event.wait(0.01)
    raise AssertionError(f"never {count} uploads waiting")


def test_an_upload_alone_is_a_round_of_one() -> None:
    store = Store()
    store.release.set()
    rounds = GroupCommit(store)
    assert rounds.submit(arrival("a")).warnings == ["a"]
    assert rounds.submit(arrival("b")).warnings == ["b"]
    assert store.rounds == [["a"], ["b"]]


def test_uploads_arriving_during_a_round_share_the_next_each_with_its_own_outcome() -> None:
    store = Store()
    rounds = GroupCommit(store)
    answers: dict[str, object] = {}
    threads = [submit(rounds, "first", answers)]
    assert store.first_started.wait(WAIT)
    threads += [submit(rounds, name, answers) for name in ("second", "bad-third", "fourth")]
    waiting(rounds, 3)
    store.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert store.rounds == [["first"], ["second", "bad-third", "fourth"]]
    assert answers["first"] == ["first"]
    assert answers["second"] == ["second"]
    assert answers["fourth"] == ["fourth"]
    # A refusal is that upload's alone, raised in its own request thread.
    assert isinstance(answers["bad-third"], InvalidDocument)
    assert not rounds._leading
    assert not rounds._waiting


def test_a_round_is_bounded_and_the_rest_waits_for_the_next() -> None:
    store = Store()
    rounds = GroupCommit(store, round_items=2)
    answers: dict[str, object] = {}
    threads = [submit(rounds, "first", answers)]
    assert store.first_started.wait(WAIT)
    threads += [submit(rounds, f"u{i}", answers) for i in range(3)]
    waiting(rounds, 3)
    store.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert [len(r) for r in store.rounds] == [1, 2, 1]
    assert sorted(name for r in store.rounds for name in r) == ["first", "u0", "u1", "u2"]
    assert all(answers[name] == [name] for name in ("first", "u0", "u1", "u2"))


def test_a_round_that_fails_answers_every_upload_with_the_error_and_the_next_one_runs() -> None:
    calls: list[int] = []

    def broken(arrivals: list[Arrival]) -> Sequence[Received | Exception]:
        calls.append(len(arrivals))
        if len(calls) == 1:
            raise OSError("the database went away")
        return [Received(warnings=["ok"]) for _ in arrivals]

    rounds = GroupCommit(broken)
    with pytest.raises(OSError, match="went away"):
        rounds.submit(arrival("a"))
    # The failed round handed nothing on: the next upload leads its own.
    assert rounds.submit(arrival("b")).warnings == ["ok"]
    assert calls == [1, 1]


def test_a_round_answering_for_the_wrong_number_of_uploads_fails_them_all() -> None:
    rounds: GroupCommit[Arrival] = GroupCommit(lambda arrivals: [])
    with pytest.raises(RuntimeError, match="another number"):
        rounds.submit(arrival("a"))
    assert not rounds._leading
