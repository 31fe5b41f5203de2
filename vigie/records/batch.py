"""`receive_many()`: `receive()` for a round of documents, with one round of fsyncs for all.

An intake channel that acknowledges each document only once it is durable (MLLP) pays, with
`receive()`, two file fsyncs and one database commit per document, each a wait for the disk.
Here a round of documents, each checked and matched exactly as `receive()` does, is stored
with one wait of each kind:

1. each document is checked (`inspect`), matched (`match_patient`) and sealed into its blob,
   written and named but not yet fsynced (`vault.group.SealGroup`);
2. every blob of the round is fsynced, files then folders, concurrently;
3. one transaction inserts every row (Document or PendingDocument, SealedResults, the
   channel's own: its ReceivedMessage), one INSERT per table for the whole round
   (`rawsql.insert_many`), runs each channel's `within` hook and appends every audit event
   as ONE batch (`audit.log.together`), then commits: one fsync of the database;
4. only then does `receive_many` return, so the caller may acknowledge.

Nothing is weakened: no row exists before its blob is durable (a crash before 3 commits
leaves orphan blobs for `vault fsck`, never a row without a blob), and every document is
acknowledged after the commit that holds it. One document that fails does not fail the
others: a check or seal failure is that document's outcome alone, and if the round's
transaction fails (a ReceivedMessage already taken by another process, a constraint), the
documents are committed again one transaction each (one per unit), so only the ones at
fault fail.

**Units.** Arrivals that share a `unit` are one delivery, stored whole or not at all (an
HPRIM file of several patients, from the hot folder): if one of them fails its check or its
seal, none of the unit's rows is written, its blobs are discarded, and every arrival of the
unit gets that failure as its outcome; if the round's transaction fails, the retry commits
each unit in one transaction of its own, never part of it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Model

from vigie import vault
from vigie.audit import log as audit_log
from vigie.audit.log import record
from vigie.lib import rawsql
from vigie.records.identifiers import InvalidIdentifier, validate_ipp, validate_nir
from vigie.records.ingest import (
    DocumentMeta,
    _validate_meta,
    meta_fields,
    record_stored,
    seal_results_of,
)
from vigie.records.ingest_errors import InvalidDocument, StorageUnavailable
from vigie.records.inspection import ContentReport, inspect
from vigie.records.models import (
    Document,
    PatientIdentifier,
    PendingDocument,
    SealedResults,
    new_document_id,
)
from vigie.records.receive import (
    CHANNELS,
    Match,
    Received,
    Sender,
    _with_type,
    in_own_source,
    ins_lookups,
    lab_report,
    match_patient,
)
from vigie.records.results import ResultSet
from vigie.vault.group import DirectSealGroup, SealGroup, seal_group

logger = logging.getLogger(__name__)

__all__ = ["Arrival", "Round", "commit_round", "commit_rounds", "prepare_round", "receive_many"]


@dataclass(frozen=True)
class Arrival:
    """One document of a round, as `receive()` takes it."""

    sender: Sender
    meta: DocumentMeta
    content: bytes
    channel: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Runs in the round's transaction with the stored row (see `receive`'s `within`).
    within: Callable[[Document | PendingDocument], None] | None = None
    # The channel's own rows for the stored row (its record of the delivery: the
    # ReceivedMessage that makes a resend a duplicate), inserted in the round's transaction
    # with the round's other rows of their model, one statement for all
    # (`rawsql.insert_many`: no save() override or signal runs, so only for models whose
    # saves need neither). Not yet in the database when `within` runs.
    rows: Callable[[Document | PendingDocument], Sequence[Model]] | None = None
    # A lab message's values (and the sender's embedded PDF), sealed beside it.
    results: ResultSet | None = None
    attachment: bytes | None = None
    # What the channel's own parser found, for content `inspect()` does not know (HPRIM
    # text): see `receive`'s `inspected`. None: inspected here, as any received file.
    inspected: ContentReport | None = None
    # Arrivals with the same unit are stored together or not at all (module docstring).
    unit: int | None = None


@dataclass
class _Ready:
    """An arrival checked and matched, its blob written: what its row needs."""

    index: int
    arrival: Arrival
    match: Match
    meta: DocumentMeta
    report: ContentReport
    row_id: str = ""
    sealed: tuple[str, bytes, int, str] = ("", b"", 0, "")
    row: Document | PendingDocument | None = None
    results: SealedResults | None = None


@dataclass
class Round:
    """A round prepared (checked, matched, its blobs durable, no row yet): `commit_round`
    next. Two steps so that a caller can pipeline: while one round commits, the next is
    prepared and its blobs fsynced (the waits release the interpreter)."""

    group: SealGroup | DirectSealGroup
    ready: list[_Ready]
    outcomes: list[Received | Exception | None]


def receive_many(
    arrivals: list[Arrival], *, executor: Executor | None = None
) -> list[Received | Exception]:
    """Each arrival's outcome, in order: its `Received` (durable), or the exception
    `receive()` would have raised for it (InvalidDocument, ForeignSource,
    StorageUnavailable, AuditUnavailable, a DatabaseError...), nothing of it stored.

    `executor` runs the round's fsyncs concurrently (a few threads are plenty).
    """
    return commit_round(prepare_round(arrivals, executor=executor))


def prepare_round(arrivals: list[Arrival], *, executor: Executor | None = None) -> Round:
    """Check, match and seal every arrival, and make the blobs durable (fsynced, files and
    folders, concurrently with `executor`); no row yet. Pipelined, this wait overlaps the
    previous round's commit."""
    outcomes: list[Received | Exception | None] = [None] * len(arrivals)
    ready: list[_Ready] = []
    with _patient_lookups(arrivals):
        for index, arrival in enumerate(arrivals):
            try:
                ready.append(_check(index, arrival))
            except Exception as exc:  # this document's answer; the others go on
                outcomes[index] = exc
    ready = _whole_units(arrivals, ready, outcomes)
    group = seal_group(
        vault.get_blob_store(), vault.get_keyring(), int(settings.VIGIE_VAULT_CHUNK_SIZE)
    )
    try:
        ready = _whole_units(arrivals, _seal(ready, group, outcomes), outcomes, group)
        if ready:
            try:
                group.sync(executor)
            except OSError as exc:
                problem = StorageUnavailable(f"cannot store the document: {exc.strerror or exc}")
                group.discard(r.row_id for r in ready)
                for item in ready:
                    outcomes[item.index] = problem
                ready = []
    except BaseException:
        group.discard(r.row_id for r in ready)
        group.close()
        raise
    return Round(group, ready, outcomes)


def commit_round(round_: Round) -> list[Received | Exception]:
    """Commit the round's rows and events in one transaction (its blobs are durable
    already); each arrival's outcome, in order. Returns once what it reports stored is
    committed."""
    return commit_rounds([round_])[0]


def commit_rounds(rounds: list[Round]) -> list[list[Received | Exception]]:
    """Prepared rounds committed in ONE transaction (REST: each request prepares its own
    round, so blob fsyncs overlap, and concurrent requests share the commit); each round's
    outcomes, in order. If that transaction fails, each unit of each round is committed
    alone, so only what is at fault fails. Returns once what it reports stored is
    committed."""
    try:
        _commit(rounds)
    except BaseException:
        # Not committed (an unexpected error): the blobs are orphans, remove them now.
        for round_ in rounds:
            round_.group.discard(
                r.row_id for r in round_.ready if not isinstance(round_.outcomes[r.index], Received)
            )
        raise
    finally:
        for round_ in rounds:
            round_.group.close()
    return [_final(round_.outcomes) for round_ in rounds]


def _commit(rounds: list[Round]) -> None:
    """Every ready arrival of `rounds` in one transaction; if it fails, each unit alone.
    Sets the outcome of each, and discards the blobs of what did not commit."""
    ready = [item for round_ in rounds for item in round_.ready]
    if not ready:
        return
    try:
        _store(ready)
    except Exception:
        # One of them (or the audit) failed the round: each alone now (each unit whole), so
        # that only what is at fault fails. Rare: a control id taken meanwhile by another
        # process, an audit log that refuses.
        logger.info("%d documents failed together; committing each unit alone", len(ready))
        for round_ in rounds:
            for unit in _units(round_.ready):
                try:
                    _store(unit)
                except Exception as exc:
                    for item in unit:
                        round_.outcomes[item.index] = exc
                    round_.group.discard(item.row_id for item in unit)
                    continue
                for item in unit:
                    _done(item, round_.outcomes)
        return
    for round_ in rounds:
        for item in round_.ready:
            _done(item, round_.outcomes)


def _final(outcomes: list[Received | Exception | None]) -> list[Received | Exception]:
    final: list[Received | Exception] = []
    for outcome in outcomes:
        if outcome is None:  # every path above sets one; guard against a silent gap
            outcome = RuntimeError("internal error: a document of the round has no outcome")
        final.append(outcome)
    return final


def _whole_units(
    arrivals: list[Arrival],
    ready: list[_Ready],
    outcomes: list[Any],
    group: SealGroup | DirectSealGroup | None = None,
) -> list[_Ready]:
    """`ready` without the arrivals of a unit one of whose members failed: each of those
    gets the unit's first failure as its outcome, and its blob (if sealed) is discarded."""
    failed: dict[int, Exception] = {}
    for index, arrival in enumerate(arrivals):
        outcome = outcomes[index]
        if arrival.unit is not None and isinstance(outcome, Exception):
            failed.setdefault(arrival.unit, outcome)
    if not failed:
        return ready
    kept: list[_Ready] = []
    for item in ready:
        unit = item.arrival.unit
        if unit is None or unit not in failed:
            kept.append(item)
            continue
        outcomes[item.index] = failed[unit]
        if group is not None:
            group.discard([item.row_id])
    return kept


def _units(ready: list[_Ready]) -> list[list[_Ready]]:
    """The round's arrivals by unit, in order; an arrival without a unit is one alone."""
    by_unit: dict[int, list[_Ready]] = {}
    units: list[list[_Ready]] = []
    for item in ready:
        unit = item.arrival.unit
        if unit is None:
            units.append([item])
        elif unit in by_unit:
            by_unit[unit].append(item)
        else:
            by_unit[unit] = [item]
            units.append(by_unit[unit])
    return units


def _patient_lookups(arrivals: list[Arrival]) -> AbstractContextManager[None]:
    """The round's patients by INS and by clinic IPP in one query each (`ins_lookups`), not
    one per document; a round of one looks its patient up as `receive()` does."""
    if len(arrivals) < 2:
        return contextlib.nullcontext()
    ins: list[str] = []
    ipps: list[str] = []
    for arrival in arrivals:
        sender = arrival.sender
        # As `match_patient` will look them up; an invalid one is refused there, not here.
        with contextlib.suppress(InvalidIdentifier):
            if sender.ins:
                ins.append(validate_nir(sender.ins))
        with contextlib.suppress(InvalidIdentifier):
            if sender.ipp and not sender.ipp_source:
                ipps.append(validate_ipp(sender.ipp))
    return ins_lookups(ins, ipps=ipps)


def _check(index: int, arrival: Arrival) -> _Ready:
    """What `receive()` checks before it stores anything, in the same order."""
    if arrival.channel not in CHANNELS:
        raise ValueError(f"unknown channel {arrival.channel!r}")
    _validate_meta(arrival.meta)
    limit = settings.VIGIE_MAX_DOCUMENT_SIZE
    if len(arrival.content) > limit:
        raise InvalidDocument(f"the document is larger than the limit of {limit} bytes")
    sender = in_own_source(arrival.sender, arrival.meta.source_system)
    inspected = arrival.inspected or inspect(arrival.content, arrival.meta.content_type)
    report = lab_report(inspected, arrival.results, arrival.attachment)
    match = match_patient(sender)
    meta = _with_type(arrival.meta, report)
    return _Ready(index, arrival, match, meta, report)


def _seal(
    ready: list[_Ready], group: SealGroup | DirectSealGroup, outcomes: list[Any]
) -> list[_Ready]:
    # One shard prefix for the round: its blobs share a folder, hence one folder fsync.
    # The other 30 characters (180 random bits) keep every id unguessable.
    prefix = new_document_id()[:2]
    sealed: list[_Ready] = []
    limit = int(settings.VIGIE_MAX_DOCUMENT_SIZE)
    failed: dict[int, Exception] = {}  # units already failed: nothing more of them sealed
    for item in ready:
        unit = item.arrival.unit
        if unit is not None and unit in failed:
            outcomes[item.index] = failed[unit]
            continue
        item.row_id = prefix + new_document_id()[2:]
        try:
            # The values first: a refusal there leaves no blob to discard.
            item.results = seal_results_of(
                item.row_id, item.arrival.results, item.arrival.attachment
            )
            item.sealed = group.seal(item.row_id, item.arrival.content, limit)
        except InvalidDocument as exc:
            outcomes[item.index] = exc
            continue
        except vault.DocumentTooLarge as exc:
            outcomes[item.index] = InvalidDocument(str(exc))
            continue
        except (OSError, vault.VaultError) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            outcomes[item.index] = StorageUnavailable(f"cannot store the document: {text}")
            continue
        finally:
            if unit is not None and isinstance(outcomes[item.index], Exception):
                failed[unit] = outcomes[item.index]
        sealed.append(item)
    return sealed


def _store(ready: list[_Ready]) -> None:
    """Insert the rows of `ready` and append their events in one transaction, committed when
    this returns (or nothing of it, if it raises).

    Rows go in one INSERT per model (`rawsql.insert_many`): the documents and their sealed
    results first, then each arrival's `within` hook and audit events in order, then the
    channels' own rows (`Arrival.rows`). The events are appended as one batch at the end of
    the block (`audit.log.together`), in the transaction that holds the rows."""
    with transaction.atomic(), audit_log.together():
        rows: list[Model] = []
        for item in ready:
            item.row = _row(item)
            rows.append(item.row)
            if item.results is not None:
                rows.append(item.results)
        rawsql.insert_many(rows, connection)
        channel_rows: list[Model] = []
        for item in ready:
            channel_rows.extend(_within(item))
        rawsql.insert_many(channel_rows, connection)


def _row(item: _Ready) -> Document | PendingDocument:
    """The arrival's unsaved row: its Document, or the PendingDocument that awaits
    reconciliation."""
    kek_id, wrapped_key, size, sha256 = item.sealed
    report = item.report
    common = {
        "id": item.row_id,
        "size": size,
        "sha256": sha256,
        "kek_id": kek_id,
        "wrapped_key": wrapped_key,
        **meta_fields(item.meta),
        "active_content": report.active_content,
        "content_warnings": list(report.warnings),
    }
    if item.match.patient is not None:
        return Document(patient=item.match.patient, **common)
    return PendingDocument(
        channel=item.arrival.channel,
        reason=item.match.reason[:500],
        identifiers=item.arrival.sender.identifiers(),
        demographics=item.arrival.sender.demographics(),
        **common,
    )


def _within(item: _Ready) -> list[Model]:
    """After the row's insert: its events, in the order `receive()` records them, and the
    channel's own rows for the round's later insert."""
    arrival, row = item.arrival, item.row
    assert row is not None  # noqa: S101 (set by _store first)
    channel_rows = list(arrival.rows(row)) if arrival.rows is not None else []
    if isinstance(row, Document):
        if arrival.within is not None:
            arrival.within(row)
        record_stored(row)
        return channel_rows
    record(
        "intake.pending",
        reason=row.reason,
        extra={
            "channel": arrival.channel,
            "source_system": item.meta.source_system,
            **arrival.extra,
            "pending_id": row.pk,
            "identifiers": arrival.sender.identifiers(),
        },
    )
    if arrival.within is not None:
        arrival.within(row)
    return channel_rows


def _done(item: _Ready, outcomes: list[Any]) -> None:
    row = item.row
    if isinstance(row, Document):
        outcomes[item.index] = Received(document=row, warnings=item.report.warnings)
        _learn(item)
    else:
        outcomes[item.index] = Received(pending=row, warnings=item.report.warnings)


def _learn(item: _Ready) -> None:
    """As `receive()`: an IPP of the sender's system, first seen with an INS match."""
    if item.match.learn is None or item.match.patient is None:
        return
    source, value = item.match.learn
    try:
        with transaction.atomic():
            PatientIdentifier.objects.create(patient=item.match.patient, source=source, value=value)
    except IntegrityError:
        logger.info("identifier %s:%s learnt concurrently", source, value)
