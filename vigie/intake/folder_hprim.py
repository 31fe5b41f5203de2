"""The hot folder's HPRIM Santé files (`.hpr`, `.hpm`, `.hprim`, `.txt`): read, stored whole
(one document per patient, all or nothing), then moved away — in rounds.

An HPRIM file names its patients itself, so it comes without a sidecar; the folder's
`--source` is still the only source system it speaks for. Same outcomes as a PDF: stored (or
waiting for reconciliation) → done/; refused → quarantine/ with `<stem>.reason.txt` naming
the line to fix; storage, database or audit log unavailable → it stays, nothing kept.
A file whose bytes were already stored from this folder, under any name, goes to done/ with
a note: laboratories resend under a new, time-stamped name.

**Rounds.** The files ready in a pass are taken up to `ROUND_FILES` at a time (and
`ROUND_BYTES`), the way the MLLP server commits messages (`records.batch`):

1. each file is read and parsed, and its patients become arrivals of one *unit* (the file);
   a file already received (one query for the round) or refused by the parse is set aside
   with its outcome, nothing of it stored; a second copy of a file in the same round waits
   for the round to end, then is taken alone (a duplicate by then);
2. `records.batch.prepare_round`: every patient's blob of the round is sealed, then all are
   fsynced together (files and their shard folder, concurrently);
3. `records.batch.commit_round`: ONE transaction holds every row, `ReceivedMessage` and
   audit event of the round, then commits (one fsync of the database). A unit is stored
   whole or not at all: a patient that fails its check refuses its own file, never the
   others'; a transaction that fails is retried file by file;
4. only then are the round's files moved: every rename first (reasons written whole before
   their file moves), then one fsync of each place used (done/, quarantine/), then one of
   the depot. A file moves to done/ only once everything it produced is committed.

A crash anywhere loses nothing and stores nothing twice: before the commit of step 3 nothing
of the round is referenced (at most orphan blobs, which `vigie vault fsck` removes), and every
file is still in the depot; after it, a file not yet moved (or whose rename did not reach the
disk before the fsyncs of step 4) is found again on the next pass, already received, and goes
to done/ as a duplicate. HPRIM files have no sidecar, so the moves of a round need no order
among themselves — that is what lets their directory fsyncs be shared.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import DatabaseError, IntegrityError, connection
from django.utils.translation import gettext as _

from vigie.audit.log import AuditUnavailable, record
from vigie.intake.depot import DONE, QUARANTINE, NotRegular
from vigie.intake.folder_notes import Outcome
from vigie.intake.hprim.channel import (
    Audit,
    Part,
    StoredFile,
    already_received,
    arrivals,
    file_control_id,
    read_parts,
    section_control_id,
)
from vigie.intake.hprim.parser import MAX_BYTES
from vigie.intake.hprim.result import HprimFile
from vigie.intake.models import ReceivedMessage
from vigie.lib import rawsql
from vigie.records.batch import Arrival, commit_round, prepare_round
from vigie.records.ingest_errors import InvalidDocument, StorageUnavailable
from vigie.records.models import Document, PendingDocument
from vigie.records.receive import Received, ins_lookups

if TYPE_CHECKING:
    from vigie.intake.folder import HotFolder

logger = logging.getLogger("vigie.intake.folder")

CHANNEL = "folder"
# Files per round at most: a bound on one transaction, and on how long a file stored waits
# for its move (the whole round's work).
ROUND_FILES = 128
# And on the memory a round holds (each file is at most MAX_BYTES): the round closes once
# its files reach this much, always after at least one.
ROUND_BYTES = 64 * 1024 * 1024


@dataclass
class _File:
    """One file of a round, from its reading to its move."""

    name: str
    content: bytes
    file_id: str
    first: int = 0  # its patients' arrivals: round.arrivals[first:first + count]
    count: int = 0
    facts: StoredFile | None = None


@dataclass
class Move:
    """A file of the round to move out of the depot once the round is committed."""

    name: str
    place: str  # DONE or QUARANTINE
    reason: str  # written beside it ("" for none)
    outcome: Outcome
    said: str  # the operator's line, once moved


@dataclass
class _Round:
    files: list[_File] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    later: list[str] = field(default_factory=list)  # second copies, taken after the round


def take_hprim(folder: HotFolder, name: str) -> Outcome | None:
    """Store one HPRIM file and move it away; None if it must stay (and be tried again).
    A round of one."""
    outcomes, _left = take_round(folder, [name])
    return outcomes[0] if outcomes else None


def take_round(
    folder: HotFolder, names: list[str], executor: Executor | None = None
) -> tuple[list[Outcome], list[str]]:
    """Take a round of these HPRIM files (see the module docstring): the outcomes of the
    files that left the depot, and the names not read because the round was full (for the
    next round). A file that must stay has no outcome (it is tried again next pass)."""
    round_ = _Round()
    size = 0
    taken: list[str] = []
    for name in names:
        if taken and (size >= ROUND_BYTES or len(taken) >= ROUND_FILES):
            break
        taken.append(name)
        content = _read(folder, name, round_)
        if content is not None:
            size += len(content)
            round_.files.append(_File(name, content, file_control_id(content)))
    left = names[len(taken) :]
    _set_aside_duplicates(folder, round_)
    parsed = _parse(folder, round_)
    prepared = None
    with ExitStack() as lookups:
        try:
            # One query for every NIR of the round; the NIR checks below and the matches of
            # prepare_round answer from it.
            lookups.enter_context(
                ins_lookups(nir for _e, (_f, parts) in parsed for nir in _nirs(parts))
            )
        except DatabaseError as exc:
            for each, _parts in parsed:
                folder._warn_once(each.name, "db", _("database unavailable, %(file)s waits: "
                                  "%(error)s") % {"file": each.name, "error": exc})  # fmt: skip
            parsed = []
        _to_arrivals(folder, round_, parsed)
        if round_.arrivals:
            prepared = prepare_round(round_.arrivals, executor=executor)
    if prepared is not None:
        outcomes = commit_round(prepared)
        for each in round_.files:
            _settle(folder, each, outcomes[each.first : each.first + each.count], round_)
    done = folder._move_round(round_.moves)
    # The second copies of a file of this round: its first copy is committed (or refused,
    # or left) by now, so each gets, alone, the answer a later pass would give it.
    for name in round_.later:
        if (outcome := take_hprim(folder, name)) is not None:
            done.append(outcome)
    return done, left


def _read(folder: HotFolder, name: str, round_: _Round) -> bytes | None:
    """The file's bytes; None when it is not part of the round (gone, unreadable, or
    refused at once: a link or a file too large, moved to quarantine/ now, alone)."""
    try:
        content = folder.depot.read(name, MAX_BYTES + 1)
    except NotRegular as exc:
        round_.moves.append(folder._irregular_move(name, exc))
        return None
    except FileNotFoundError:
        return None  # taken away by its sender meanwhile
    except OSError as exc:
        folder._warn_once(name, "read", _("cannot read %(file)s: %(error)s")
                          % {"file": name, "error": exc.strerror or exc})  # fmt: skip
        return None
    if len(content) > MAX_BYTES:
        reason = _("the HPRIM file is larger than %(limit)d MiB: split it into several files") % {
            "limit": MAX_BYTES // (1024 * 1024)
        }
        round_.moves.append(_refusal(name, reason))
        return None
    return content


def _set_aside_duplicates(folder: HotFolder, round_: _Round) -> None:
    """Files already received (one query for the round) go to done/ with a note; a second
    copy of a file of the round waits for the round to end."""
    try:
        taken = _already_taken(folder.source, [each.file_id for each in round_.files])
    except DatabaseError as exc:
        for each in round_.files:
            folder._warn_once(each.name, "db", _("database unavailable, %(file)s waits: "
                              "%(error)s") % {"file": each.name, "error": exc})  # fmt: skip
        round_.files = []
        return
    seen: set[str] = set()
    kept: list[_File] = []
    for each in round_.files:
        if each.file_id in taken:
            try:
                earlier = already_received(CHANNEL, folder.source, each.content)
            except DatabaseError as exc:
                folder._warn_once(each.name, "db", _("database unavailable, %(file)s waits: "
                                  "%(error)s") % {"file": each.name, "error": exc})  # fmt: skip
                continue
            round_.moves.append(_duplicate(each.name, earlier))
        elif each.file_id in seen:
            round_.later.append(each.name)
        else:
            seen.add(each.file_id)
            kept.append(each)
    round_.files = kept


def _already_taken(source: str, file_ids: list[str]) -> set[str]:
    """Which of these files were received from this folder before, in one query, written
    raw (as the MLLP round's look-up: the ORM's query cost more CPU than the answer)."""
    if not file_ids:
        return set()
    first = {section_control_id(file_id, 1): file_id for file_id in file_ids}
    conn = rawsql.resolved(connection)
    column = rawsql.column(ReceivedMessage, "control_id", conn)
    marks = ", ".join(["%s"] * len(first))
    sql = (
        f"SELECT {column} FROM {rawsql.table(ReceivedMessage, conn)}"  # noqa: S608 (names from the model)
        f" WHERE {rawsql.column(ReceivedMessage, 'channel', conn)} = %s"
        f" AND {rawsql.column(ReceivedMessage, 'source', conn)} = %s"
        f" AND {column} IN ({marks})"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql, [CHANNEL, source, *sorted(first)])
        return {first[row[0]] for row in cursor.fetchall()}


_Parsed = list[tuple[_File, tuple[HprimFile, list[Part]]]]


def _parse(folder: HotFolder, round_: _Round) -> _Parsed:
    """Every file of the round parsed; a file the parse refuses is set aside for quarantine/
    with the line to fix, before anything of it is stored."""
    parsed: _Parsed = []
    for each in round_.files:
        try:
            parsed.append((each, read_parts(each.content, folder.source_system, folder.today())))
        except InvalidDocument as exc:
            round_.moves.append(_refusal(each.name, str(exc)))
    return parsed


def _nirs(parts: list[Part]) -> list[str]:
    return [part.report.nir for part in parts if part.report.nir]


def _to_arrivals(folder: HotFolder, round_: _Round, parsed: _Parsed) -> None:
    """Each parsed file's patients as one unit of arrivals."""
    kept: list[_File] = []
    for unit, (each, read) in enumerate(parsed):
        try:
            facts, found = arrivals(
                each.content,
                source_system=folder.source_system,
                channel=CHANNEL,
                received_as=CHANNEL,
                source=folder.source,
                audit=_audit(folder, each.name, each.file_id),
                unit=unit,
                extra={"file": each.name},
                today=folder.today(),
                parsed=read,
            )
        except InvalidDocument as exc:
            round_.moves.append(_refusal(each.name, str(exc)))
            continue
        except DatabaseError as exc:  # the NIR look-up: the database is away, it waits
            folder._warn_once(each.name, "db", _("database unavailable, %(file)s waits: "
                              "%(error)s") % {"file": each.name, "error": exc})  # fmt: skip
            continue
        each.facts, each.first, each.count = facts, len(round_.arrivals), len(found)
        round_.arrivals.extend(found)
        kept.append(each)
    round_.files = kept


def _settle(
    folder: HotFolder, each: _File, outcomes: list[Received | Exception], round_: _Round
) -> None:
    """What becomes of one file of the committed round, from its patients' outcomes (a unit:
    all stored, or all carrying the same failure)."""
    failure = next((o for o in outcomes if isinstance(o, Exception)), None)
    if failure is None:
        facts = each.facts
        assert facts is not None  # noqa: S101 (set with its arrivals)
        stored = StoredFile(facts.control_id, [o for o in outcomes if isinstance(o, Received)],
                            facts.warnings)  # fmt: skip
        round_.moves.append(_stored(each.name, stored))
    elif isinstance(failure, InvalidDocument):
        round_.moves.append(_refusal(each.name, str(failure)))
    elif isinstance(failure, IntegrityError) and (
        again := already_received(CHANNEL, folder.source, each.content)
    ):
        # Its bytes were taken meanwhile (another process under another lock?): a duplicate.
        round_.moves.append(_duplicate(each.name, again))
    elif isinstance(failure, StorageUnavailable | AuditUnavailable | DatabaseError):
        # Nothing of it was kept (its unit rolled back): it stays for the next pass.
        folder._warn_once(each.name, "store", _("cannot store %(file)s now, it stays: "
                          "%(error)s") % {"file": each.name, "error": failure})  # fmt: skip
    else:
        # A bug or an unforeseen failure: the file stays (nothing of it was kept), the
        # traceback goes to the log once.
        if (each.name, "error") not in folder._warned:
            logger.error("hot folder: %s", each.name, exc_info=failure)
        folder._warn_once(each.name, "error", _("%(file)s stays in the folder after an "
                          "unexpected error: %(error)s") % {"file": each.name,
                          "error": repr(failure)})  # fmt: skip


def _audit(folder: HotFolder, name: str, file_id: str) -> Audit:
    def audit(row: Document | PendingDocument, index: int) -> None:
        is_document = isinstance(row, Document)
        record(
            "intake.received",
            document=row if isinstance(row, Document) else None,
            patient=row.patient if isinstance(row, Document) else None,
            extra={
                "channel": CHANNEL,
                "source": folder.source,
                "control_id": section_control_id(file_id, index),
                "file": name,
                "hprim_patient": index,
                "pending_id": "" if is_document else str(row.pk),
            },
        )

    return audit


def _stored(name: str, stored: StoredFile) -> Move:
    # As for a PDF, done/ says nothing of whether the patients were found (the sender would
    # learn who is a patient here); the parse's doubts are the lab's to fix, so they are said.
    detail = ""
    if stored.warnings:
        detail = "\n".join(
            [_("stored, but the file deserves a look:"), *(f"- {w}" for w in stored.warnings)]
        )
    status = "stored" if stored.all_matched else "pending"
    ids = ", ".join(stored.ids)
    said = _("%(file)s: %(status)s (%(id)s)") % {"file": name, "status": status, "id": ids}
    return Move(name, DONE, detail, Outcome(name, status, detail, ",".join(stored.ids)), said)


def _duplicate(name: str, earlier: list[ReceivedMessage]) -> Move:
    ids = [row.document_id or row.pending_id for row in earlier]
    detail = _(
        "already received on %(when)s (%(ids)s): the same file is not stored twice, "
        "whatever its name; a corrected report must differ from the first one"
    ) % {"when": earlier[0].received_at.isoformat(timespec="seconds"), "ids": ", ".join(ids)}
    said = _("%(file)s: duplicate of %(id)s") % {"file": name, "id": ", ".join(ids)}
    return Move(name, DONE, detail, Outcome(name, "duplicate", detail, ",".join(ids)), said)


def _refusal(name: str, reason: str) -> Move:
    said = _("%(file)s: quarantined: %(reason)s") % {"file": name, "reason": reason}
    return Move(name, QUARANTINE, reason, Outcome(name, "quarantined", reason), said)
