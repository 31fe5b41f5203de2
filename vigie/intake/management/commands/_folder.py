"""`vigie intake folder DIR --outbox OUT --source SYSTEM`: the hot folder's options and loop.

Dispatched by `intake.py`; the leading underscore keeps Django from taking this module for a
command of its own. The work of a pass is `vigie.intake.folder.HotFolder.scan`, the contract
with the senders docs/hot-folder.md.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.utils.translation import gettext as _

from vigie.intake.depot import FolderTampered
from vigie.intake.folder import HotFolder
from vigie.lib.dbconn import drop_dead_connections
from vigie.lib.shutdown import stop_on_signals


def configure(parser: CommandParser) -> None:
    parser.add_argument("dir", type=Path, help=_("the folder to watch"))
    parser.add_argument(
        "--source",
        required=True,
        help=_("the source system of the documents dropped here (who writes the folder): "
               "their origin for doctors, and the only system whose IPPs a sidecar may name"),
    )  # fmt: skip
    parser.add_argument(
        "--outbox",
        type=Path,
        required=True,
        help=_("Vigie's own folder for done/ and quarantine/: outside the watched folder, on "
               "the same filesystem, owned by Vigie's user and writable by it only (0700)"),
    )  # fmt: skip
    parser.add_argument(
        "--interval", type=float, default=1.0, help=_("seconds between passes (default 1)")
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help=_("a file is taken once its size and time have not changed for this long "
               "(seconds, default 2)"),
    )  # fmt: skip
    parser.add_argument(
        "--sidecar-wait",
        type=float,
        default=600.0,
        help=_("a PDF whose JSON sidecar has not arrived after this long is quarantined "
               "(seconds, default 600)"),
    )  # fmt: skip
    parser.add_argument(
        "--once",
        action="store_true",
        help=_("take what is ready (waiting --settle for new files), then exit"),
    )
    parser.add_argument(
        "--delete-done",
        action="store_true",
        help=_("delete files once stored instead of moving them to OUTBOX/done/, which keeps "
               "plaintext copies of medical documents outside Vigie's encrypted store"),
    )  # fmt: skip


def _check_folder(path: Path) -> Path:
    if not path.is_dir():
        raise CommandError(_("%(dir)s is not a directory") % {"dir": path}, returncode=2)
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise CommandError(
            _("%(dir)s must be readable and writable by this user") % {"dir": path},
            returncode=2,
        )
    resolved = path.resolve()
    home = Path(settings.VIGIE_HOME).resolve()
    if resolved == home or home in resolved.parents:
        # Documents arrive in plaintext: they must not sit inside Vigie's own storage.
        raise CommandError(
            _("%(dir)s is inside VIGIE_HOME; use a folder outside it") % {"dir": path},
            returncode=2,
        )
    return resolved


def _check_outbox(path: Path, depot: Path) -> Path:
    if not path.is_dir():
        raise CommandError(
            _("%(dir)s is not a directory; create it for Vigie's user only, e.g. "
              "`install -d -o vigie -g vigie -m 0700 %(dir)s`") % {"dir": path},
            returncode=2,
        )  # fmt: skip
    resolved = _check_folder(path)
    if resolved == depot or depot in resolved.parents or resolved in depot.parents:
        # Inside the depot, its writers could rename or replace done/ and quarantine/.
        raise CommandError(
            _("%(outbox)s and %(dir)s must be apart: neither inside the other")
            % {"outbox": path, "dir": depot},
            returncode=2,
        )
    return resolved


def run(options: dict[str, Any], stdout: OutputWrapper) -> None:
    for option in ("interval", "settle", "sidecar_wait"):
        if options[option] < 0:
            raise CommandError(
                _("--%(option)s must not be negative") % {"option": option.replace("_", "-")},
                returncode=2,
            )
    if not options["source"].strip():
        raise CommandError(_("--source must name the folder's source system"), returncode=2)
    depot = _check_folder(options["dir"])
    folder = HotFolder(
        depot,
        _check_outbox(options["outbox"], depot),
        source_system=options["source"].strip(),
        settle=options["settle"],
        sidecar_wait=options["sidecar_wait"],
        delete_done=options["delete_done"],
        out=stdout,
    )
    try:
        folder.prepare()
        # A lease broken while we hold it (see open_for_writing) sends SIGIO, whose default
        # action is to terminate the process.
        with folder.locked(), stop_on_signals(folder.stop.set, ignore=(signal.SIGIO,)):
            _loop(folder, once=options["once"], interval=options["interval"])
    except FolderTampered as exc:
        raise CommandError(str(exc), returncode=2) from None
    finally:
        folder.close()


def _loop(folder: HotFolder, *, once: bool, interval: float) -> None:
    started = folder.clock()
    while not folder.stop.is_set():
        # After a database restart or failover the files wait ("database unavailable") only
        # until the connection is replaced, not until the watcher is restarted.
        drop_dead_connections()
        _outcomes, settling = folder.scan()
        # --once: new files get one settle time to prove they are complete, no more, so a
        # writer that never finishes cannot keep a cron job running.
        if once and (settling == 0 or folder.clock() - started >= folder.settle):
            return
        folder.stop.wait(min(interval, folder.settle / 2) if once else interval)
