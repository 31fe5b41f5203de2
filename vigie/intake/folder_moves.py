"""How the hot folder moves files out of its depot, into done/ or quarantine/ in its outbox:
never overwriting, reason files written whole, each move made durable in the order recovery
relies on (sidecar first, PDF last), or a round's moves made durable together.

Apart from `folder.py` so that the taking of files reads on its own; `HotFolder` mixes it in.
"""

from __future__ import annotations

import os
import stat

from django.utils.translation import gettext as _

from vigie.intake.depot import DONE, MOVING, Depot, Outbox
from vigie.intake.folder_hprim import Move
from vigie.intake.folder_notes import OperatorNotes, Outcome
from vigie.intake.folder_notes import split_name as _split


class FileMoves(OperatorNotes):
    """Mixed into `HotFolder`, which opens the depot and the outbox."""

    delete_done: bool

    @property
    def depot(self) -> Depot:
        raise NotImplementedError

    @property
    def box(self) -> Outbox:
        raise NotImplementedError

    def _move_round(self, moves: list[Move]) -> list[Outcome]:
        """Move a round's files out of the depot once what they produced is committed (see
        folder_hprim.py): every rename first, then one fsync of each place used, then one of
        the depot. Each move is a single file (an HPRIM file has no sidecar), so no order
        among them matters; a rename that a crash undoes leaves the file in the depot, where
        the next pass finds it already received (or refuses it again)."""
        if not moves:
            return []
        places = {move.place for move in moves}
        # Listed once for the round, not once per file: done/ only grows.
        taken = {place: {n.lower() for n in self.box.place(place).names()} for place in places}
        for move in moves:
            if self.delete_done and move.place == DONE:
                self._note_swap(move.name, self.box.remove_read(self.depot, move.name))
                continue
            stem = self._free_stem(move.place, move.name, taken[move.place])
            self._move_all(move.place, stem, [move.name], move.reason or None, sync=False)
        # done/ too with --delete-done: files pass through it on their way out (`remove_read`).
        for place in sorted(places):
            self.box.place(place).fsync()
        self.depot.fsync()
        for move in moves:
            self._say(move.said)
        return [move.outcome for move in moves]

    def _move_all(
        self,
        place: str,
        stem: str,
        files: list[str | None],
        reason: str | None,
        *,
        sync: bool = True,
    ) -> None:
        """Reason first, then each file (sidecar before PDF), each move made durable (or,
        with `sync=False`, left for the caller to make durable: a round's moves)."""
        if reason:
            self._write_reason(place, stem, reason)
        notes: list[str] = []
        for each in files:
            if each is None:
                continue
            note = self.box.move_in(self.depot, each, place, stem + _split(each)[1])
            if sync:
                self._sync(place)
            if note:
                notes.append(_("%(file)s was %(what)s") % {"file": each, "what": note})
                self._note_swap(each, note)
        if notes:
            # The writer swapped a name between our look and the move: say what arrived,
            # after the reason already there (from this call or from an interrupted one).
            before = self.box.read_text(place, f"{stem}.reason.txt")
            self._write_reason(place, stem, "\n".join([before.rstrip("\n"), *notes]).strip())

    def _note_swap(self, name: str, note: str) -> None:
        """Tell the operator what the writer put in a file's place before it moved."""
        if note:
            self._say(_("%(file)s was %(what)s") % {"file": name, "what": note})

    def _give_back_leftovers(self) -> None:
        """Files a crash left on their way out of the depot (`depot.MOVING`) go back to it:
        the next pass finds each already received (a duplicate, moved on) or takes it."""
        for place, moving in self.box.moving_leftovers():
            st = os.stat(moving, dir_fd=self.box.place(place).fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue  # never a link or a special file into the depot; left for the operator
            given = self.box.give_back(self.depot, place, moving, moving[len(MOVING) :])
            self._say(_("%(file)s: put back in the folder after an interrupted move")
                      % {"file": given})  # fmt: skip
        self.depot.fsync()

    def _free_stem(self, place: str, name: str, taken: set[str] | None = None) -> str:
        """A stem under which neither this file (a PDF, an HPRIM file), a sidecar nor a
        reason exists in `place` (no overwrite): an HPRIM `x.reason.txt` must not land on
        the reason of `x.txt`, nor the reverse. `taken`: the place's names (lower case) as
        a round listed them, updated here with the names this stem claims."""
        stem, ext = _split(name)
        # Room for the longest name this stem will carry (`.stem~N.reason.txt.tmp`, the
        # reason's temporary name): a sender's name near the filesystem's limit is cut, or
        # its reason could never be written and the file would stay in the depot, failing on
        # every pass.
        limit = os.fpathconf(self.box.place(place).fd, "PC_NAME_MAX")
        longest = max(len(".reason.txt.tmp") + 1, len(os.fsencode(ext)))
        room = limit - longest - len("~999999")
        if len(os.fsencode(stem)) > room:
            stem = os.fsdecode(os.fsencode(stem)[: max(room, 1)])
        listed = taken is not None
        if taken is None:
            taken = {n.lower() for n in self.box.place(place).names()}
        candidate, n = stem, 1
        while any(
            f"{candidate.lower()}{end}" in taken
            for end in (".pdf", ".json", ".reason.txt", ext.lower())
        ):
            n += 1
            candidate = f"{stem}~{n}"
        if listed:
            taken.update(f"{candidate.lower()}{end}" for end in (ext.lower(), ".reason.txt"))
        return candidate

    def _leftover_stem(self, place: str, name: str) -> str | None:
        """The stem of a sidecar in `place` whose PDF never followed (a crash between moves)."""
        stem, _ext = _split(name)
        lower = {n.lower() for n in self.box.place(place).names()}
        n = 1
        candidate = stem
        while f"{candidate.lower()}.json" in lower or f"{candidate.lower()}.pdf" in lower:
            if f"{candidate.lower()}.pdf" not in lower:
                return candidate
            n += 1
            candidate = f"{stem}~{n}"
        return None

    def _write_reason(self, place: str, stem: str, reason: str) -> None:
        # Written whole (temp + fsync + rename): a torn reason would be worse than none.
        self.box.write_text(place, f"{stem}.reason.txt", reason.rstrip("\n") + "\n")

    def _sync(self, place: str) -> None:
        # After each move, not once at the end: the renames of two directories reach the
        # disk in no particular order, and recovery relies on "sidecar first, PDF last".
        self.box.place(place).fsync()
        self.depot.fsync()
