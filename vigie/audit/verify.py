"""Recompute the whole chain and check it against the signed checkpoints.

Streams the events in seq order (server-side cursor on PostgreSQL, one SELECT on SQLite) with
a lean loop: raw tuples, the time formatted by the database or by slicing, `extra` re-encoded
only when not empty. The first problem found is named with its sequence number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone

from vigie.audit import chain
from vigie.audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    load_signing_key,
    read_checkpoints,
    signature_ok,
)
from vigie.audit.models import AuditEvent, AuditHead

# Plain constants (no interpolation): the columns in `chain.FIELDS` order, then extra and hashes.
_SQLITE_QUERY = (
    "SELECT seq, CAST(at AS TEXT), action, actor_id, actor_username, actor_role, actor_display, "
    "patient_id, patient_ipp, document_id, outcome, source_ip, user_agent, request_id, reason, "
    "extra, prev_hash, hash FROM audit_auditevent WHERE seq >= %s AND seq <= %s ORDER BY seq"
)
_PG_QUERY = (
    "SELECT seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), action, "
    "actor_id, actor_username, actor_role, actor_display, patient_id, patient_ipp, document_id, "
    "outcome, source_ip, user_agent, request_id, reason, extra::text, prev_hash, hash "
    "FROM audit_auditevent WHERE seq >= %s AND seq <= %s ORDER BY seq"
)


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # gap, prev mismatch, hash mismatch, checkpoint mismatch, truncated, checkpoint
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: {self.detail}"


@dataclass
class VerifyResult:
    checked: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)
    # The unanchored tail: events past the last signed checkpoint, which someone with database
    # access alone could still rewrite or drop unnoticed, and how old the oldest of them is.
    tail_events: int = 0
    tail_age: timedelta | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.seq) if self.problems else None


def verify(
    *,
    checkpoint_file: Path | None = None,
    chunk_size: int = 20_000,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    min_per_job: int = 100_000,
    using: str = DEFAULT_DB_ALIAS,
    public_key: Ed25519PublicKey | None = None,
    max_tail_age: timedelta | None = None,
    now: datetime | None = None,
) -> VerifyResult:
    """Check the whole log. `progress(n)` is called as each n more events are checked.

    With `jobs` > 1 (and a committed log of at least `min_per_job` events per job), seq
    ranges are verified in parallel processes, each from its first row's stored previous
    hash; the seams are then checked here, so the result is the same as a single walk.

    `using` and `public_key` let a backup check verify a snapshot's database against the
    signing key of the export it came with; they default to this installation's.

    With `max_tail_age` (`vigie audit verify` passes two checkpoint intervals), an unanchored
    tail older than that is a problem: the checkpoint writer is not running, or was kept from
    signing, and that tail cannot be trusted.
    """
    result = VerifyResult()
    # The checkpoint file first: every checkpoint in it refers to committed events, which
    # the events query (started afterwards) therefore sees, even while appends go on.
    expected_hash = _check_checkpoints(checkpoint_file, result, public_key)
    head_seq = (
        AuditHead.objects.using(using).filter(pk=1).values_list("seq", flat=True).first() or 0
    )
    jobs = max(1, min(jobs, head_seq // max(min_per_job, 1)))
    if jobs == 1 or using != DEFAULT_DB_ALIAS or connection.in_atomic_block:
        segments = [_walk(1, _NO_END, expected_hash, chunk_size, progress, using=using)]
    else:
        segments = _walk_parallel(head_seq, jobs, expected_hash, chunk_size, progress)
    chain_problem = _join(segments, result)
    if chain_problem is not None:
        result.problems.append(chain_problem)
        return result
    if expected_hash:
        last_signed = max(expected_hash)
        if last_signed > result.last_seq:
            result.problems.append(
                Problem(
                    result.last_seq + 1,
                    "truncated after checkpoint",
                    f"a signed checkpoint covers seq {last_signed} but the log ends at "
                    f"seq {result.last_seq}",
                )
            )
    _check_head(result, using)
    _check_tail(result, max(expected_hash, default=0), using, max_tail_age, now)
    return result


def _check_tail(
    result: VerifyResult,
    last_signed: int,
    using: str,
    max_tail_age: timedelta | None,
    now: datetime | None,
) -> None:
    if result.last_seq <= last_signed:
        return
    result.tail_events = result.last_seq - last_signed
    oldest = (
        AuditEvent.objects.using(using)
        .filter(seq=last_signed + 1)
        .values_list("at", flat=True)
        .first()
    )
    if oldest is None:
        return
    result.tail_age = max((now or timezone.now()) - oldest, timedelta(0))
    if max_tail_age is not None and result.tail_age > max_tail_age:
        result.problems.append(
            Problem(
                last_signed + 1,
                "unanchored tail",
                f"{result.tail_events} event(s) after the last signed checkpoint "
                f"(seq {last_signed}), the oldest {int(result.tail_age.total_seconds())} s old, "
                f"beyond {int(max_tail_age.total_seconds())} s: is `vigie audit watch` running?",
            )
        )


_NO_END = 2**62


def _join(segments: list[Segment], result: VerifyResult) -> Problem | None:
    """Add up the segments, checking each seam: the first problem in seq order wins."""
    previous: Segment | None = None
    for segment in segments:
        if previous is not None:
            if previous.last_seq != previous.high:
                return Problem(
                    previous.last_seq + 1, "gap", f"seq {previous.last_seq + 1} is missing"
                )
            if segment.start_prev is not None and segment.start_prev != previous.last_hash:
                return Problem(
                    segment.low,
                    "prev mismatch",
                    "the stored previous hash is not the hash of the event before",
                )
        result.checked += segment.checked
        if segment.checked:
            result.last_seq = segment.last_seq
        if segment.problem is not None:
            return segment.problem
        previous = segment
    return None


def _segment_worker(args: tuple[int, int, dict[int, str], int]) -> Segment:
    low, high, checkpoints, chunk_size = args
    try:
        return _walk(low, high, checkpoints, chunk_size, None)
    finally:
        connection.close()


def _walk_parallel(
    head_seq: int,
    jobs: int,
    checkpoints: dict[int, str],
    chunk_size: int,
    progress: Callable[[int], None] | None,
) -> list[Segment]:
    import multiprocessing

    from django.db import connections

    step = head_seq // jobs + 1
    bounds = [(1 + k * step, (k + 1) * step) for k in range(jobs)]
    bounds[-1] = (bounds[-1][0], _NO_END)  # the last range also takes events appended since
    # Children must open their own connections: a shared socket or SQLite handle corrupts.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    segments: list[Segment] = []
    with context.Pool(jobs) as pool:
        work = [(low, high, checkpoints, chunk_size) for low, high in bounds]
        for segment in pool.imap(_segment_worker, work):
            segments.append(segment)
            if progress is not None:
                progress(segment.checked)
    return segments


def _check_checkpoints(
    path: Path | None, result: VerifyResult, public: Ed25519PublicKey | None
) -> dict[int, str]:
    checkpoints, malformed = read_checkpoints(path)
    for line, reason in malformed:
        result.problems.append(Problem(0, "checkpoint", f"checkpoint file line {line}: {reason}"))
    expected: dict[int, str] = {}
    if not checkpoints:
        return expected
    if public is None:
        try:
            public = load_signing_key().public_key()
        except CheckpointError as exc:
            result.problems.append(Problem(0, "checkpoint", f"cannot check signatures: {exc}"))
            return expected
    previous: Checkpoint | None = None
    for checkpoint in checkpoints:
        if not signature_ok(checkpoint, public):
            result.problems.append(
                Problem(
                    checkpoint.seq,
                    "checkpoint",
                    f"checkpoint file line {checkpoint.line}: bad signature",
                )
            )
            continue
        if previous is not None and checkpoint.seq < previous.seq:
            result.problems.append(
                Problem(
                    checkpoint.seq,
                    "checkpoint",
                    f"checkpoint file line {checkpoint.line} goes back from seq {previous.seq}",
                )
            )
        known = expected.setdefault(checkpoint.seq, checkpoint.hash)
        if known != checkpoint.hash:
            result.problems.append(
                Problem(checkpoint.seq, "checkpoint", "two signed checkpoints disagree (a fork)")
            )
        previous = checkpoint
        result.checkpoints += 1
    return expected


@dataclass
class Segment:
    """What one walk over seq in [low, high] found; `start_prev` is the first row's stored
    previous hash (checked by the caller when the walk did not start at genesis)."""

    low: int
    high: int
    checked: int = 0
    last_seq: int = 0
    start_prev: str | None = None
    last_hash: str | None = None
    problem: Problem | None = None


def _walk(
    low: int,
    high: int,
    checkpoints: dict[int, str],
    chunk_size: int,
    progress: Callable[[int], None] | None,
    *,
    using: str = DEFAULT_DB_ALIAS,
) -> Segment:
    segment = Segment(low, high, last_seq=low - 1)
    connection = connections[using]
    postgres = connection.vendor == "postgresql"
    link = _Link(prev=chain.GENESIS, prev_hex=chain.GENESIS_HEX, expected_seq=low)
    first = low == 1
    with connection.chunked_cursor() if postgres else connection.cursor() as cursor:
        cursor.execute(_PG_QUERY if postgres else _SQLITE_QUERY, [low, high])
        while True:
            rows = cursor.fetchmany(chunk_size)
            if not rows:
                break
            if segment.start_prev is None:
                segment.start_prev = rows[0][16]
                if not first and isinstance(rows[0][16], str):
                    link.prev_hex = rows[0][16]
                    try:
                        link.prev = bytes.fromhex(link.prev_hex)
                    except ValueError:
                        link.prev = b""
            segment.problem = _check_rows(rows, link, checkpoints, postgres)
            if segment.problem is not None:
                return segment
            segment.checked += len(rows)
            segment.last_seq = link.expected_seq - 1
            segment.last_hash = link.prev_hex
            if progress is not None:
                progress(len(rows))
    return segment


@dataclass
class _Link:
    """Where the walk is in the chain: the last event's hash and the seq expected next."""

    prev: bytes
    prev_hex: str
    expected_seq: int


def _check_rows(
    rows: list[tuple[Any, ...]], link: _Link, checkpoints: dict[int, str], postgres: bool
) -> Problem | None:
    """Check one chunk of rows against the chain, advancing `link`; the first problem found.

    Called once per chunk, not per row: the loop below is the hot path of `vigie audit
    verify` (a million events in seconds), hence the local names for what it calls."""
    sha256 = hashlib.sha256
    dumps = chain.dumps
    loads = json.loads
    fmt = chain.FORMAT
    prev, prev_hex, expected_seq = link.prev, link.prev_hex, link.expected_seq
    for row in rows:
        seq = row[0]
        if seq != expected_seq:
            kind = "gap" if seq > expected_seq else "out of order"
            return Problem(expected_seq, kind, f"expected seq {expected_seq}, found seq {seq}")
        try:
            at = row[1]
            if not postgres:
                # Django stores "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC on SQLite.
                at = f"{at[:10]}T{at[11:]}Z" if len(at) == 26 else f"{at[:10]}T{at[11:19]}.000000Z"
            extra = row[15]
            if extra != "{}":
                extra = dumps(loads(extra))
            body = dumps((fmt, seq, at, *row[2:15]))
            leaf = sha256(b"\x00" + (body[:-1] + "," + extra + "]").encode("ascii")).digest()
            digest = sha256(b"\x01" + prev + leaf).digest()
            digest_hex = digest.hex()
        except (TypeError, ValueError, AttributeError):
            return Problem(seq, "malformed", "a field of the event cannot be read")
        if row[16] != prev_hex:
            return Problem(
                seq,
                "prev mismatch",
                "the stored previous hash is not the hash of the event before",
            )
        if row[17] != digest_hex:
            return Problem(
                seq, "hash mismatch", "the event's content does not match its stored hash"
            )
        signed = checkpoints.get(seq)
        if signed is not None and signed != digest_hex:
            return Problem(
                seq,
                "checkpoint mismatch",
                "the chain differs from the signed checkpoint at this seq",
            )
        prev = digest
        prev_hex = digest_hex
        expected_seq = seq + 1
    link.prev, link.prev_hex, link.expected_seq = prev, prev_hex, expected_seq
    return None


def _check_head(result: VerifyResult, using: str) -> None:
    head = AuditHead.objects.using(using).filter(pk=1).values_list("seq", "hash").first()
    if head is None:
        return
    seq, hash_ = head
    if seq < result.last_seq:
        result.problems.append(
            Problem(seq + 1, "head mismatch", f"the head says seq {seq}, the log goes on")
        )
    elif seq > result.last_seq and not AuditEvent.objects.using(using).filter(seq=seq).exists():
        result.problems.append(
            Problem(
                result.last_seq + 1,
                "truncated",
                f"the head says seq {seq} but the log ends at seq {result.last_seq}",
            )
        )
    elif seq == result.last_seq and result.last_seq > 0:
        last_hash = (
            AuditEvent.objects.using(using).filter(seq=seq).values_list("hash", flat=True).first()
        )
        if last_hash != hash_:
            result.problems.append(
                Problem(seq, "head mismatch", "the head's hash is not the last event's")
            )
