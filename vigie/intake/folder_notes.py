"""What the hot folder tells its operator: messages, warnings once per file, the progress bar.

Apart from `folder.py` so that the taking of files reads on its own; `HotFolder` mixes it in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, cast

from django.core.management.base import OutputWrapper
from django.utils.translation import gettext as _

from vigie.intake.depot import DONE, QUARANTINE, Entry

logger = logging.getLogger("vigie.intake.folder")

# A pass with at least this many files ready shows a progress bar (on a terminal).
PROGRESS_THRESHOLD = 20
# What a sender may drop: a PDF with its JSON sidecar, or an HPRIM Santé file on its own.
PDF_EXTENSIONS = (".pdf", ".json")
HPRIM_EXTENSIONS = (".hpr", ".hpm", ".hprim", ".txt")


def is_hprim(name: str) -> bool:
    return name.lower().endswith(HPRIM_EXTENSIONS)


def split_name(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return stem, dot + ext


def _raw_stream(out: TextIO | OutputWrapper | None) -> TextIO | None:
    # rich writes control sequences: it needs the terminal stream, not Django's wrapper
    # (which appends a newline to every write).
    if isinstance(out, OutputWrapper):
        return cast("TextIO", vars(out)["_out"])
    return out


@dataclass
class Outcome:
    """What became of one file, for the log and the tests."""

    name: str
    status: str  # "stored", "pending", "duplicate", "quarantined", "deleted"...
    detail: str = ""
    # The document's id; for an HPRIM file, its patients' ids, comma-separated.
    document_id: str = ""


class OperatorNotes:
    """Mixed into `HotFolder`, whose fields these are."""

    path: Path
    outbox: Path
    out: TextIO | OutputWrapper | None
    sidecar_wait: float
    wall_clock: Callable[[], float]
    _warned: set[tuple[str, str]]

    @contextmanager
    def _progress(self, count: int) -> Iterator[Callable[[], None]]:
        """A progress bar on a terminal for a large pass; below PROGRESS_THRESHOLD, nothing."""
        if count < PROGRESS_THRESHOLD:
            yield lambda: None
            return
        from rich.console import Console
        from rich.progress import Progress

        console = Console(file=_raw_stream(self.out), stderr=self.out is None)
        self._say(_("%(count)d files to take in %(dir)s") % {"count": count, "dir": self.path})
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(_("Taking files"), total=count)
            yield lambda: bar.advance(task)

    def _say(self, message: str) -> None:
        logger.info("%s", message)
        if self.out is not None:
            self.out.write(message + ("" if isinstance(self.out, OutputWrapper) else "\n"))

    def _warn_once(self, name: str, kind: str, message: str) -> None:
        if (name, kind) in self._warned:
            return
        self._warned.add((name, kind))
        logger.warning("%s", message)
        self._say(message)

    def _warn_about_others(self, entries: dict[str, Entry], names: set[str]) -> None:
        for other in entries.keys() - names:
            if entries[other].is_dir:
                self._warn_about_subfolder(entries[other])
                continue
            if other.startswith((".", "~")) or other.lower().endswith(
                (".tmp", ".part", ".partial", ".filepart", ".crdownload")
            ):
                continue
            self._warn_once(
                other,
                "ignored",
                _("%(file)s ignored: only PDF files with a JSON sidecar and HPRIM Santé files "
                  "(.hpr, .hpm, .hprim, .txt) are taken") % {"file": other},
            )  # fmt: skip

    def _warn_about_subfolder(self, entry: Entry) -> None:
        if entry.name in (DONE, QUARANTINE):
            # Left by an older Vigie (or planted to look like one): its files are readable by
            # every writer of the depot, and Vigie no longer writes there.
            message = _(
                "%(dir)s/%(name)s/ is not used: done/ and quarantine/ are in %(outbox)s, out of "
                "the senders' reach; move what it holds there (docs/operations.md, Upgrading)"
            ) % {"dir": self.path, "name": entry.name, "outbox": self.outbox}
        else:
            message = _(
                "%(dir)s/%(name)s/ ignored (owner uid %(uid)d): Vigie never enters a subfolder "
                "of the folder"
            ) % {"dir": self.path, "name": entry.name, "uid": entry.uid}
        self._warn_once(entry.name, "subfolder", message)

    def _warn_about_lone_sidecars(
        self, names: set[str], by_lower: dict[str, str], entries: dict[str, Entry]
    ) -> None:
        for name in names:
            if not name.lower().endswith(".json"):
                continue
            if by_lower.get(split_name(name)[0].lower() + ".pdf") is not None:
                continue
            if self.wall_clock() - entries[name].ctime >= self.sidecar_wait:
                self._warn_once(
                    name, "lone", _("%(file)s has no PDF: left in place") % {"file": name}
                )
