"""`vigie intake folder DIR`: take PDFs (with a JSON sidecar) and HPRIM Santé files that a
lab or hospital system drops in a folder (HPRIM: `folder_hprim.py`).

The senders' contract: docs/hot-folder.md. The command's loop: management/commands/_folder.py.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, cast

from django.conf import settings
from django.core.management.base import CommandError, OutputWrapper
from django.db import DatabaseError, IntegrityError
from django.utils.translation import gettext as _

from vigie.alerts.models import Severity
from vigie.alerts.services import raise_alert
from vigie.audit.log import record
from vigie.intake.depot import DONE, QUARANTINE, Depot, Entry, FolderTampered, NotRegular, Outbox
from vigie.intake.folder_hprim import ROUND_FILES, Move, take_hprim, take_round
from vigie.intake.folder_moves import FileMoves
from vigie.intake.folder_notes import (
    HPRIM_EXTENSIONS,
    PDF_EXTENSIONS,
    is_hprim,
)
from vigie.intake.folder_notes import Outcome as Outcome  # where the callers look for it
from vigie.intake.folder_notes import split_name as _split
from vigie.intake.models import ReceivedMessage
from vigie.intake.sidecar import SIDECAR_MAX_BYTES, SidecarError, parse_sidecar
from vigie.records.ingest_errors import InvalidDocument, StorageUnavailable
from vigie.records.models import Document, PendingDocument
from vigie.records.receive import Received, receive

logger = logging.getLogger(__name__)

CHANNEL = "folder"
# Threads that fsync a round's blobs together (the disk then serves them in one go).
FSYNC_THREADS = 4


# ---------------------------------------------------------------------------------------------
# Files in the folder


def is_candidate(name: str) -> bool:
    """Names a sender may be still writing (temporary, hidden) are never looked at."""
    return not name.startswith((".", "~")) and name.lower().endswith(
        PDF_EXTENSIONS + HPRIM_EXTENSIONS
    )


def control_id(name: str, content: bytes) -> str:
    """What identifies a delivered file: its name and its bytes (see docs/hot-folder.md)."""
    digest = hashlib.sha256()
    encoded = name.encode("utf-8", "surrogateescape")
    digest.update(len(encoded).to_bytes(8, "big") + encoded)
    digest.update(content)
    return digest.hexdigest()


def source_of(folder: Path) -> str:
    """ReceivedMessage.source for this folder: its resolved path, hashed if too long."""
    path = str(folder.resolve())
    limit = ReceivedMessage._meta.get_field("source").max_length or 200
    if len(path) <= limit:
        return path
    tail = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return path[: limit - 17] + "#" + tail


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


@dataclass
class HotFolder(FileMoves):
    """One watched folder. `scan()` runs one pass; the command loops over it.

    `path` is the depot, shared with the senders; `outbox` is Vigie's own folder, where
    done/ and quarantine/ live (see vigie/intake/depot.py for why they are apart).
    """

    path: Path
    outbox: Path
    # The folder's one source system (`--source`), set by its administrator, never the
    # sidecar's: required.
    source_system: str = ""
    settle: float = 2.0
    sidecar_wait: float = 600.0
    delete_done: bool = False
    out: TextIO | OutputWrapper | None = None
    # Injectable so tests control time without sleeping.
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    today: Callable[[], datetime.date] = datetime.date.today
    stop: threading.Event = field(default_factory=threading.Event)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _warned: set[tuple[str, str]] = field(default_factory=set)
    # PDFs known not to be received yet, by (size, mtime), while they wait for a sidecar.
    _lone: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    _depot: Depot | None = None
    _box: Outbox | None = None
    _fsyncs: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if not self.source_system.strip():
            raise ValueError("a hot folder needs its source system (--source)")
        self.done = self.outbox / DONE
        self.quarantine = self.outbox / QUARANTINE
        self.source = source_of(self.path)

    # -- setting up ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open the depot and the outbox (creating done/ and quarantine/); FolderTampered."""
        if self._depot is None:
            self._depot = Depot(self.path)
        if self._box is None:
            try:
                self._box = Outbox(self.outbox)
            except FolderTampered as exc:
                self._tampered(exc)
                raise
            if self._box.dev() != os.fstat(self._depot.fd).st_dev:
                raise CommandError(
                    _("%(outbox)s must be on the same filesystem as %(dir)s: files leave the "
                      "folder by an atomic rename") % {"outbox": self.outbox, "dir": self.path},
                    returncode=2,
                )  # fmt: skip

    def close(self) -> None:
        for place in (self._depot, self._box):
            if place is not None:
                place.close()
        self._depot = self._box = None
        if self._fsyncs is not None:
            self._fsyncs.shutdown(wait=True)
            self._fsyncs = None

    @property
    def fsyncs(self) -> ThreadPoolExecutor:
        if self._fsyncs is None:
            self._fsyncs = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="folder-fsync")
        return self._fsyncs

    @property
    def depot(self) -> Depot:
        if self._depot is None:
            self.prepare()
        return cast("Depot", self._depot)

    @property
    def box(self) -> Outbox:
        if self._box is None:
            self.prepare()
        return cast("Outbox", self._box)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One process per folder: two would race to move the same files."""
        with self.box.locked() as held:
            if not held:
                raise CommandError(
                    _("another `vigie intake folder` is already watching %(dir)s")
                    % {"dir": self.path},
                    returncode=2,
                )
            # Only under the lock: another watcher's files on their way out are its own.
            self._give_back_leftovers()
            yield

    def _tampered(self, exc: FolderTampered) -> None:
        # Not the senders' doing (they cannot reach the outbox) or a mistake that would let
        # them: either way a person must look, and no file moves until then.
        message = _("hot folder %(dir)s stopped: %(problem)s") % {
            "dir": self.path,
            "problem": exc,
        }
        logger.critical("%s", message)
        self._say(message)
        raise_alert(
            "intake.folder_tampered",
            severity=Severity.CRITICAL,
            summary=message,
            details={"folder": str(self.path), "outbox": str(self.outbox), "problem": str(exc)},
            dedupe_key=f"intake.folder_tampered:{self.outbox}",
        )

    # -- one pass --------------------------------------------------------------------------

    def scan(self) -> tuple[list[Outcome], int]:
        """Take every pair that is ready; return what happened and how many still settle.

        FolderTampered (after a critical alert) when the outbox is no longer Vigie's own.
        """
        ready, settling = self.ready()
        return self._take_all(ready), settling

    def ready(self) -> tuple[list[tuple[str, str | None]], int]:
        """The (PDF, sidecar) pairs ready to take, and how many files still settle.

        A name listed here may be swapped by the writer before `take()` opens it: `take()`
        trusts nothing it saw here.
        """
        try:
            self.box.verify()
        except FolderTampered as exc:
            self._tampered(exc)
            raise
        try:
            entries = self.depot.entries()
        except OSError as exc:
            self._warn_once("", "scan", _("cannot read %(dir)s: %(error)s")
                            % {"dir": self.path, "error": exc.strerror or exc})  # fmt: skip
            return [], 0
        self.depot.forget_reads(set(entries))
        # Links are taken too, to be refused (quarantined without being followed).
        names = {n for n, e in entries.items() if is_candidate(n) and (e.is_file or e.is_symlink)}
        self._warn_about_others(entries, names)
        by_lower = {n.lower(): n for n in names}
        stable: set[str] = set()
        settling = 0
        for name in sorted(names):
            if self._is_stable(name, entries[name]):
                stable.add(name)
            else:
                settling += 1
        for gone in set(self._seen) - names:
            del self._seen[gone]
        for gone in set(self._lone) - names:
            del self._lone[gone]
        ready: list[tuple[str, str | None]] = []
        for name in sorted(names):
            if is_hprim(name) and name in stable:
                ready.append((name, None))  # an HPRIM file names its patients itself
                continue
            if not name.lower().endswith(".pdf") or name not in stable:
                continue
            sidecar = by_lower.get(_split(name)[0].lower() + ".json")
            if sidecar is not None and sidecar not in stable:
                settling += 1
                continue
            ready.append((name, sidecar))
        self._warn_about_lone_sidecars(names, by_lower, entries)
        return ready, settling

    def _is_stable(self, name: str, st: Entry) -> bool:
        now = self.clock()
        seen = self._seen.get(name)
        if seen is None or (seen.size, seen.mtime_ns) != (st.size, st.mtime_ns):
            self._seen[name] = seen = _Seen(st.size, st.mtime_ns, now)
        if now - seen.since < self.settle:
            return False
        if self.depot.open_for_writing(name):
            # Still open by its writer: restart the settle time from when it is closed.
            seen.since = now
            return False
        return True

    def _take_all(self, ready: list[tuple[str, str | None]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        # HPRIM files in rounds (folder_hprim.py: one fsync wave, one transaction and one
        # set of directory fsyncs for many files); PDFs, with their sidecars, one by one.
        hprim = [name for name, _sidecar in ready if is_hprim(name)]
        with self._progress(len(ready)) as advance:
            while hprim and not self.stop.is_set():
                batch, hprim = hprim[:ROUND_FILES], hprim[ROUND_FILES:]
                taken, left = self._take_round_safely(batch)
                outcomes.extend(taken)
                hprim = left + hprim
                for _taken in range(len(batch) - len(left)):
                    advance()
            for name, sidecar in ready:
                if self.stop.is_set():
                    break
                if is_hprim(name):
                    continue
                if (outcome := self._take_safely(name, sidecar)) is not None:
                    outcomes.append(outcome)
                advance()
        return outcomes

    def _take_round_safely(self, names: list[str]) -> tuple[list[Outcome], list[str]]:
        try:
            return take_round(self, names, self.fsyncs)
        except Exception:
            # A bug or an unforeseen failure in the round: each file alone now, so that a
            # file that causes it stays on its own and does not hold the others back.
            logger.exception("hot folder: a round of %d files failed; taking them one by one",
                             len(names))  # fmt: skip
            return [o for name in names if (o := self._take_safely(name, None)) is not None], []

    def _take_safely(self, name: str, sidecar: str | None) -> Outcome | None:
        try:
            return self.take(name, sidecar)
        except Exception as exc:
            # A bug or an unforeseen failure on one file must not stop the others; the file
            # stays in DIR (nothing lost) and the traceback goes to the log, once.
            if (name, "error") not in self._warned:
                logger.exception("hot folder: %s", name)
            self._warn_once(name, "error", _("%(file)s stays in the folder after an "
                            "unexpected error: %(error)s") % {"file": name, "error": repr(exc)})  # fmt: skip
            return None

    # -- one file --------------------------------------------------------------------------

    def take(self, name: str, sidecar: str | None) -> Outcome | None:
        """Store one PDF (with its sidecar) and move both away; None if it must wait."""
        if is_hprim(name):
            return take_hprim(self, name)
        limit = settings.VIGIE_MAX_DOCUMENT_SIZE
        if sidecar is None and self._lone.get(name) == self._stat_key(name):
            # Already looked up while it waits for its sidecar: no need to read it again.
            return self._without_sidecar(name)
        try:
            content = self.depot.read(name, limit + 1)
            raw_sidecar = self.depot.read(sidecar, SIDECAR_MAX_BYTES + 1) if sidecar else None
        except NotRegular as exc:
            # Planted, or swapped in since the listing: O_NOFOLLOW refused it, nothing was read.
            return self._refuse_irregular(name, sidecar, exc)
        except FileNotFoundError:
            return None  # taken away by its sender meanwhile: nothing of ours to do
        except OSError as exc:
            self._warn_once(name, "read", _("cannot read %(file)s: %(error)s")
                            % {"file": name, "error": exc.strerror or exc})  # fmt: skip
            return None
        cid = control_id(name, content)
        try:
            already = ReceivedMessage.objects.filter(
                channel=CHANNEL, source=self.source, control_id=cid
            ).first()
        except DatabaseError as exc:
            self._warn_once(name, "db", _("database unavailable, %(file)s waits: %(error)s")
                            % {"file": name, "error": exc})  # fmt: skip
            return None
        if already is not None:
            return self._duplicate(name, sidecar, already)
        if sidecar is None:
            self._lone[name] = self._stat_key(name)
            return self._without_sidecar(name)
        if raw_sidecar is None:  # the sidecar was named but not read: impossible above
            return None
        if len(content) > limit:
            return self._refuse(
                name, sidecar, _("the document is larger than the limit of %(limit)d bytes")
                % {"limit": limit},
            )  # fmt: skip
        try:
            parsed = parse_sidecar(raw_sidecar, source_system=self.source_system)
        except SidecarError as exc:
            return self._refuse(
                name, sidecar, _("%(file)s: %(error)s") % {"file": sidecar, "error": exc}
            )
        try:
            received = receive(
                parsed.sender,
                parsed.meta,
                content,
                channel=CHANNEL,
                extra={"file": name},
                within=self._remember(name, cid),
            )
        except InvalidDocument as exc:
            return self._refuse(name, sidecar, str(exc))
        except IntegrityError:
            # Another process took the same file between our look-up and our commit.
            again = ReceivedMessage.objects.filter(
                channel=CHANNEL, source=self.source, control_id=cid
            ).first()
            if again is None:
                raise
            return self._duplicate(name, sidecar, again)
        except (StorageUnavailable, DatabaseError) as exc:
            # Nothing was kept: leave the file where it is and try again next pass.
            self._warn_once(name, "store", _("cannot store %(file)s now, it stays: %(error)s")
                            % {"file": name, "error": exc})  # fmt: skip
            return None
        return self._stored(name, sidecar, received)

    def _stat_key(self, name: str) -> tuple[int, int] | None:
        st = self.depot.lstat(name)
        return None if st is None else (st.size, st.mtime_ns)

    def _refuse_irregular(self, name: str, sidecar: str | None, exc: NotRegular) -> Outcome:
        return self._refuse(name, sidecar, self._irregular_reason(exc))

    def _irregular_move(self, name: str, exc: NotRegular) -> Move:
        """An HPRIM file of a round that is not a plain file: quarantined with the round."""
        reason = self._irregular_reason(exc)
        said = _("%(file)s: quarantined: %(reason)s") % {"file": name, "reason": reason}
        return Move(name, QUARANTINE, reason, Outcome(name, "quarantined", reason), said)

    def _irregular_reason(self, exc: NotRegular) -> str:
        raise_alert(
            "intake.folder_not_a_file",
            severity=Severity.WARNING,
            summary=_("hot folder %(dir)s: %(file)s is %(what)s, refused without being read")
            % {"dir": self.path, "file": exc.name, "what": exc.what},
            details={"folder": str(self.path), "file": exc.name, "what": exc.what},
            dedupe_key=f"intake.folder_not_a_file:{self.source}",
        )
        return (
            _("%(file)s is %(what)s: Vigie reads only plain files and never follows a link; "
              "nothing of it was read or stored")
            % {"file": exc.name, "what": exc.what}
        )  # fmt: skip

    def _remember(self, name: str, cid: str) -> Callable[[Document | PendingDocument], None]:
        def within(row: Document | PendingDocument) -> None:
            # In the row's transaction: the file is "received" exactly when the row exists.
            is_document = isinstance(row, Document)
            ReceivedMessage.objects.create(
                channel=CHANNEL,
                source=self.source,
                control_id=cid,
                document_id=row.pk if is_document else "",
                pending_id="" if is_document else row.pk,
            )
            record(
                "intake.received",
                document=row if isinstance(row, Document) else None,
                patient=row.patient if isinstance(row, Document) else None,
                extra={
                    "channel": CHANNEL,
                    "source": self.source,
                    "control_id": cid,
                    "file": name,
                    "pending_id": "" if is_document else str(row.pk),
                },
            )

        return within

    def _stored(self, name: str, sidecar: str, received: Received) -> Outcome:
        notes: list[str] = []
        # "pending" is for this process's log (the clinic's operator), never written to
        # done/: the sender's side looks the same whether the patient is known or not.
        status = "pending" if received.pending is not None else "stored"
        if received.warnings:
            notes.append(
                _("stored, but flagged for active content (%(what)s): offered as a download "
                  "only, never displayed inline")
                % {"what": ", ".join(received.warnings)}
            )  # fmt: skip
        detail = "\n".join(notes)
        self._finish(name, sidecar, detail)
        outcome = Outcome(name, status, detail, received.id)
        self._say(
            _("%(file)s: %(status)s (%(id)s)") % {"file": name, "status": status, "id": received.id}
        )
        return outcome

    def _duplicate(self, name: str, sidecar: str | None, already: ReceivedMessage) -> Outcome:
        target = already.document_id or already.pending_id
        detail = (
            _("already received on %(when)s (%(id)s): not stored twice; to send corrected "
              "metadata for the same PDF, use a new file name")
            % {"when": already.received_at.isoformat(timespec="seconds"), "id": target}
        )  # fmt: skip
        self._finish(name, sidecar, detail)
        self._say(_("%(file)s: duplicate of %(id)s") % {"file": name, "id": target})
        return Outcome(name, "duplicate", detail, target)

    def _without_sidecar(self, name: str) -> Outcome | None:
        leftover = self._leftover_stem(QUARANTINE, name)
        if leftover is not None:
            # A crash between moving the sidecar and the PDF to quarantine: finish the move.
            self._move_all(QUARANTINE, leftover, [name], reason=None)
            return Outcome(name, "quarantined", _("(completing an interrupted move)"))
        st = self.depot.lstat(name)
        if st is None:
            return None
        if self.wall_clock() - st.ctime < self.sidecar_wait:
            return None
        return self._refuse(
            name,
            None,
            _("no sidecar: %(json)s did not arrive within %(wait)s s of the PDF")
            % {"json": _split(name)[0] + ".json", "wait": f"{self.sidecar_wait:g}"},
        )

    def _refuse(self, name: str, sidecar: str | None, reason: str) -> Outcome:
        stem = self._free_stem(QUARANTINE, name)
        self._move_all(QUARANTINE, stem, [sidecar, name], reason)
        self._say(_("%(file)s: quarantined: %(reason)s") % {"file": name, "reason": reason})
        return Outcome(name, "quarantined", reason)

    def _finish(self, name: str, sidecar: str | None, detail: str) -> None:
        """The PDF is durably received: move (or delete) it and its sidecar. Sidecar first."""
        if self.delete_done:
            for each in (sidecar, name):
                if each is not None:
                    self._note_swap(each, self.box.remove_read(self.depot, each))
                    self.depot.fsync()
            return
        leftover = self._leftover_stem(DONE, name) if sidecar is None else None
        stem = leftover or self._free_stem(DONE, name)
        self._move_all(DONE, stem, [sidecar, name], detail or None)
