"""The MLLP server's committer: messages from every connection, stored in rounds.

Each connection hands its message to `MessageCommitter.submit` and waits for the ACK;
`MessageCommitter.run` takes every message waiting, stores them as one round
(`batch.prepare_many`, then `batch.finish_many`) and answers each. Pipelined: while round k commits (its rows and audit
events, one transaction), round k+1 is parsed, converted, sealed and its blobs fsynced, in
another thread; commits stay one at a time, in order, each after its own blobs' fsyncs, and
no ACK is written before the commit that holds its message.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from django.db import close_old_connections, connection
from django.db.backends.base.base import BaseDatabaseWrapper

from vigie.intake.hl7.batch import Prepared, finish_many, prepare_many
from vigie.intake.hl7.handler import Reply
from vigie.intake.models import MllpSender
from vigie.lib import rawsql

_T = TypeVar("_T")

# Messages per round at most: a bound on one transaction and on the memory a round holds
# (each message is at most --max-message-bytes).
ROUND_MESSAGES = 256
ROUND_BYTES = 64 * 1024 * 1024
# Threads that fsync a round's blobs concurrently (the disk then serves them in one go).
FSYNC_THREADS = 8


def in_worker(work: Callable[[], _T]) -> _T:
    """Run `work` in a worker thread with a usable database connection: a connection broken
    (the database restarted) or too old is replaced before and after, as Django does around
    each web request."""
    close_old_connections()
    try:
        return work()
    finally:
        close_old_connections()


@dataclass
class _Waiting:
    """A message handed to the committer, and where its ACK goes (None: hang up)."""

    payload: bytes
    sender: MllpSender
    reply: asyncio.Future[Reply | None]


@dataclass
class _Round:
    size: int
    kept: list[int]  # indexes of the messages whose sender is still active
    prepared: Prepared


class MessageCommitter:
    """The queue of messages waiting, and the two threads that store them in rounds."""

    def __init__(self, local_authority: str, on_revoked: Callable[[MllpSender], None]) -> None:
        self.local_authority = local_authority
        self.on_revoked = on_revoked
        self.fsyncs = ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="mllp-fsync")
        # One thread prepares rounds, one commits them; each keeps its database connection.
        self.preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mllp-prepare")
        self.committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mllp-commit")
        self.waiting: asyncio.Queue[_Waiting] = asyncio.Queue()

    async def submit(self, payload: bytes, sender: MllpSender) -> Reply | None:
        """The ACK of one message, once its round is committed (None: the sender was
        revoked meanwhile, hang up)."""
        waiting = _Waiting(payload, sender, asyncio.get_running_loop().create_future())
        self.waiting.put_nowait(waiting)
        return await waiting.reply

    async def run(self) -> None:
        """Until cancelled: take every message waiting, store them as one round, answer each."""
        loop = asyncio.get_running_loop()
        committing: asyncio.Task[None] | None = None
        try:
            while True:
                batch = await self._gather()
                try:
                    prepared = await loop.run_in_executor(
                        self.preparer,
                        functools.partial(in_worker, functools.partial(self._prepare, batch)),
                    )
                except Exception as exc:  # each waiter must get an answer: the error, here
                    _answer(batch, exc)
                    continue
                if committing is not None:
                    await committing
                committing = asyncio.create_task(self._commit(batch, prepared))
        finally:
            if committing is not None:
                await asyncio.shield(committing)

    def shutdown(self) -> None:
        self.preparer.shutdown(wait=True)
        self.committer.shutdown(wait=True)
        self.fsyncs.shutdown(wait=True)

    async def _gather(self) -> list[_Waiting]:
        first = await self.waiting.get()
        batch, size = [first], len(first.payload)
        while not self.waiting.empty() and len(batch) < ROUND_MESSAGES and size < ROUND_BYTES:
            batch.append(self.waiting.get_nowait())
            size += len(batch[-1].payload)
        return batch

    async def _commit(self, batch: list[_Waiting], prepared: _Round) -> None:
        loop = asyncio.get_running_loop()
        answers: list[Reply | None] | Exception
        try:
            answers = await loop.run_in_executor(
                self.committer,
                functools.partial(in_worker, functools.partial(self._finish, prepared)),
            )
        except Exception as exc:  # each waiter must get an answer: the error, here
            answers = exc
        _answer(batch, answers)

    def _prepare(self, batch: list[_Waiting]) -> _Round:
        """In the preparing thread: the senders still active, their messages prepared."""
        # Checked for each message: a revocation takes effect on open connections too.
        active = _active({w.sender.pk for w in batch})
        for waiting in batch:
            if waiting.sender.pk not in active:
                self.on_revoked(waiting.sender)
        kept = [i for i, w in enumerate(batch) if w.sender.pk in active]
        prepared = prepare_many(
            [(batch[i].payload, batch[i].sender) for i in kept],
            local_authority=self.local_authority,
            executor=self.fsyncs,
        )
        return _Round(len(batch), kept, prepared)

    def _finish(self, round_: _Round) -> list[Reply | None]:
        """In the committing thread: the reply of each waiting message (None: hang up)."""
        replies: list[Reply | None] = [None] * round_.size
        answers = finish_many(round_.prepared)
        for index, answer in zip(round_.kept, answers, strict=True):
            replies[index] = answer
        return replies


def _active(pks: set[int]) -> set[int]:
    """Which of these senders are not revoked: one statement per round, written raw (the
    ORM's query cost more CPU than the answer, on every round)."""
    conn = rawsql.resolved(connection)
    head, tail = _active_sql(conn)
    marks = ", ".join(["%s"] * len(pks))
    with conn.cursor() as cursor:
        cursor.execute(f"{head}({marks}){tail}", sorted(pks))
        return {int(row[0]) for row in cursor.fetchall()}


def _active_sql(conn: BaseDatabaseWrapper) -> tuple[str, str]:
    """`_active`'s statement before and after its list of ids."""

    def build() -> tuple[str, str]:
        pk = rawsql.column(MllpSender, "id", conn)
        return (
            f"SELECT {pk} FROM {rawsql.table(MllpSender, conn)} WHERE {pk} IN ",  # noqa: S608 (names from the model)
            f" AND {rawsql.column(MllpSender, 'revoked_at', conn)} IS NULL",
        )

    return rawsql.once_per_database("hl7.active", conn, build)


def _answer(batch: list[_Waiting], answers: list[Reply | None] | Exception) -> None:
    for index, waiting in enumerate(batch):
        if waiting.reply.done():  # its connection went away meanwhile
            continue
        if isinstance(answers, Exception):
            waiting.reply.set_exception(answers)
        else:
            waiting.reply.set_result(answers[index])
