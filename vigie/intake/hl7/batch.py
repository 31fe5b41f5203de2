"""`handle_many()`: the messages that reached the MLLP server at the same time, one ACK each,
stored with one round of fsyncs for all (`records.batch.receive_many`).

Each message gets exactly the answer `handler.handle` would give it alone — same parse, same
conversion (`handler.convert`), same duplicate rule, same refusals and audit events — and
AA only once its document is committed. What the round shares is the waiting: one fsync of
the blobs' files and folders, one transaction and one audit append for every document.

A message that fails is answered on its own (AE/AR); the others of the round are stored.
Duplicates: a control id already taken (a resend after a lost ACK, or a kill -9 before it)
is answered AA without storing, as `handle` does; the same control id twice in one round
(a sender resending on a second connection) is stored once, the later copy answered after
the round as a duplicate.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field

from django.db import IntegrityError, connection
from django.db.backends.base.base import BaseDatabaseWrapper

from vigie.intake.hl7 import ack
from vigie.intake.hl7.handler import (
    CHANNEL,
    Reply,
    _duplicate,
    _facts,
    _header,
    _taken,
    convert,
    handle,
    received_event,
    received_from,
    received_row,
    reply_for,
)
from vigie.intake.hl7.parser import Header, Message, parse, peek_header
from vigie.intake.models import MllpSender, ReceivedMessage
from vigie.lib import rawsql
from vigie.records.batch import Arrival, Round, commit_round, prepare_round
from vigie.records.receive import Received

logger = logging.getLogger(__name__)

__all__ = ["Prepared", "finish_many", "handle_many", "prepare_many"]


@dataclass
class _Item:
    raw: bytes
    sender: MllpSender
    header: Header
    message: Message | None = None
    reply: Reply | None = None
    arrival: int = -1  # its index among the round's arrivals
    later: bool = False  # same control id as an earlier message of the round


@dataclass
class Prepared:
    """A round of messages read, converted and sealed: `finish_many` stores and answers."""

    items: list[_Item]
    local_authority: str
    stored: list[_Item] = field(default_factory=list)
    round: Round | None = None


def handle_many(
    messages: list[tuple[bytes, MllpSender]],
    *,
    local_authority: str = "",
    executor: Executor | None = None,
) -> list[Reply]:
    """The ACK of each (raw message, sender), in order; never raises."""
    prepared = prepare_many(messages, local_authority=local_authority, executor=executor)
    return finish_many(prepared)


def prepare_many(
    messages: list[tuple[bytes, MllpSender]],
    *,
    local_authority: str,
    executor: Executor | None = None,
) -> Prepared:
    """Parse, check duplicates, convert, match and seal each message, its blob made durable
    (`executor` runs the fsyncs concurrently); no row yet. Refusals are answered here.
    Never raises."""
    items = [_read(raw, sender) for raw, sender in messages]
    prepared = Prepared(items, local_authority)
    try:
        _prepare(prepared, executor)
    except Exception as exc:  # a bug or an outage: every message still gets an answer
        _fail(prepared, exc)
    return prepared


def finish_many(prepared: Prepared) -> list[Reply]:
    """Commit the round, then the ACK of each message, in order. Never raises."""
    try:
        _finish(prepared)
    except Exception as exc:  # as above: an answer for each
        _fail(prepared, exc)
    for item in prepared.items:
        if item.later:
            # After the round: the first copy is committed (or refused) by now.
            item.reply = handle(
                item.raw, sender=item.sender, local_authority=prepared.local_authority
            )
    replies: list[Reply] = []
    for item in prepared.items:
        if item.reply is None:  # every path sets one; never answer nothing
            item.reply = reply_for(item.header, RuntimeError("no answer"), item.sender)
        replies.append(item.reply)
    return replies


def _fail(prepared: Prepared, exc: Exception) -> None:
    logger.error("hl7: a round of %d failed", len(prepared.items), exc_info=exc)
    for item in prepared.items:
        if item.reply is None and not item.later:
            item.reply = reply_for(item.header, exc, item.sender)


def _read(raw: bytes, sender: MllpSender) -> _Item:
    try:
        message = parse(raw)
    except Exception as exc:
        # Refused: the header as far as it can be read, for the ACK to name the message.
        try:
            header = peek_header(raw)
        except Exception:  # an ACK must go out even if the header cannot be read at all
            logger.exception("hl7: unreadable header")
            header = Header()
        item = _Item(raw, sender, header)
        item.reply = reply_for(header, exc, sender)
        return item
    # Parsed: its header is read from the message itself (`handle` peeks first, then
    # parses; the result is the same, and a round parses each message once).
    return _Item(raw, sender, _header(message), message)


def _prepare(prepared: Prepared, executor: Executor | None) -> None:
    parsed = [i for i in prepared.items if i.reply is None and i.message is not None]
    taken = _already_taken(parsed)
    seen: set[tuple[str, str]] = set()
    arrivals: list[Arrival] = []
    for item in parsed:
        message = item.message
        assert message is not None  # noqa: S101 (filtered above)
        key = (received_from(item.sender, message), message.control_id)
        if key in taken:
            item.reply = _duplicate(item.header, message, taken[key], item.sender)
            continue
        if key in seen:
            item.later = True
            continue
        seen.add(key)
        try:
            converted = convert(item.raw, message, item.sender, prepared.local_authority)
        except Exception as exc:
            item.reply = reply_for(item.header, exc, item.sender)
            continue
        item.arrival = len(arrivals)
        arrivals.append(
            Arrival(
                sender=converted.patient,
                meta=converted.meta,
                content=converted.content,
                channel=CHANNEL,
                extra=_facts(message, item.sender),
                # Its ReceivedMessage goes in with the round's others: one INSERT.
                rows=received_row(message, item.sender),
                within=received_event(message, item.sender),
                results=converted.results,
                attachment=converted.attachment,
            )
        )
        prepared.stored.append(item)
    if arrivals:
        prepared.round = prepare_round(arrivals, executor=executor)


def _finish(prepared: Prepared) -> None:
    if prepared.round is None:
        return
    outcomes = commit_round(prepared.round)
    for item in prepared.stored:
        outcome = outcomes[item.arrival]
        message = item.message
        assert message is not None  # noqa: S101 (stored items are parsed)
        if isinstance(outcome, Received):
            item.reply = Reply(
                ack=ack.build(item.header, ack.ACCEPT),
                code=ack.ACCEPT,
                control_id=message.control_id,
                document_id=outcome.document.pk if outcome.document else "",
                pending_id=outcome.pending.pk if outcome.pending else "",
            )
        elif isinstance(outcome, IntegrityError) and (now := _taken(message, item.sender)):
            # Taken a moment ago (another process, or the round before this one) first.
            item.reply = _duplicate(item.header, message, now, item.sender)
        else:
            item.reply = reply_for(item.header, outcome, item.sender)


def _already_taken(items: list[_Item]) -> dict[tuple[str, str], ReceivedMessage]:
    """The round's control ids already taken, in one query (not one per message), written
    raw: building the ORM's query cost more CPU per round than the database's answer."""
    ids = sorted({i.message.control_id for i in items if i.message is not None})
    if not ids:
        return {}
    conn = rawsql.resolved(connection)
    marks = ", ".join(["%s"] * len(ids))
    with conn.cursor() as cursor:
        cursor.execute(f"{_taken_sql(conn)}({marks})", [CHANNEL, *ids])
        rows = cursor.fetchall()
    found = [ReceivedMessage(**dict(zip(_TAKEN_FIELDS, row, strict=True))) for row in rows]
    return {(r.source, r.control_id): r for r in found}


# What a duplicate's answer needs of the message taken (text columns: no conversion).
_TAKEN_FIELDS = ("id", "source", "control_id", "document_id", "pending_id")


def _taken_sql(conn: BaseDatabaseWrapper) -> str:
    """`_already_taken`'s statement up to its list of ids."""
    return rawsql.once_per_database(
        "hl7.taken",
        conn,
        lambda: (
            f"SELECT {', '.join(rawsql.column(ReceivedMessage, n, conn) for n in _TAKEN_FIELDS)}"  # noqa: S608 (names from the model)
            f" FROM {rawsql.table(ReceivedMessage, conn)}"
            f" WHERE {rawsql.column(ReceivedMessage, 'channel', conn)} = %s"
            f" AND {rawsql.column(ReceivedMessage, 'control_id', conn)} IN "
        ),
    )
