"""`vigie backup create|verify|restore|prune|list DEST`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from vigie import vault
from vigie.audit.log import record
from vigie.backup import keys as key_export
from vigie.backup.create import BackupError, create
from vigie.backup.destination import Destination, DestinationError
from vigie.backup.manifest import ManifestError
from vigie.backup.restore import RestoreError, restore
from vigie.backup.retention import prune
from vigie.backup.sealed import SealedFileError
from vigie.backup.verify import VerifyReport, verify_snapshot

_STAGES = {
    "blobs": "Checking blobs",
    "documents": "Decrypting documents",
    "audit": "Verifying the audit chain",
}


def _bar(console: Console) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _size(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


class Command(BaseCommand):
    help = "Back up, verify, restore and prune snapshots of this installation."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        make = sub.add_parser("create", help="take a snapshot while the portal serves")
        make.add_argument("dest", type=Path)
        make.add_argument("--keep-daily", type=int, default=None, metavar="N")
        make.add_argument("--keep-weekly", type=int, default=None, metavar="N")
        check = sub.add_parser("verify", help="check a snapshot: signature, blobs, documents")
        check.add_argument("dest", type=Path)
        check.add_argument("--snapshot", default=None, help="snapshot id (default: latest)")
        check.add_argument(
            "--keys",
            type=Path,
            default=None,
            help="keys export to check with (default: this installation's keys)",
        )
        check.add_argument("--json", action="store_true", help="print the summary as JSON")
        back = sub.add_parser("restore", help="restore a snapshot into an empty VIGIE_HOME")
        back.add_argument("dest", type=Path)
        back.add_argument("--keys", type=Path, required=True, help="the `vigie keys export` file")
        back.add_argument("--snapshot", default=None, help="snapshot id (default: latest)")
        trim = sub.add_parser("prune", help="apply retention to DEST")
        trim.add_argument("dest", type=Path)
        trim.add_argument("--keep-daily", type=int, default=7, metavar="N")
        trim.add_argument("--keep-weekly", type=int, default=4, metavar="N")
        show = sub.add_parser("list", help="list the snapshots in DEST")
        show.add_argument("dest", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, f"_{action}")(options)
        except (
            BackupError,
            DestinationError,
            ManifestError,
            RestoreError,
            SealedFileError,
            key_export.KeysExportError,
            vault.VaultError,
        ) as exc:
            raise CommandError(str(exc), returncode=2) from None

    # --- create ----------------------------------------------------------------------------

    def _create(self, options: dict[str, Any]) -> None:
        console = Console(stderr=True)
        with _bar(console) as bar:
            task = bar.add_task("Copying blobs", total=None)
            result = create(
                options["dest"],
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        record(
            "backup.create",
            extra={
                "snapshot": result.snapshot_id,
                "dest": str(options["dest"]),
                "documents": result.documents,
                "copied": result.copied,
                "reused": result.reused,
                "audit_seq": result.audit_seq,
            },
        )
        self.stdout.write(
            f"snapshot {result.snapshot_id}: {result.documents} document(s), "
            f"{result.pending} to reconcile, {result.blobs} blob(s) "
            f"({result.copied} copied, {_size(result.bytes_copied)}; {result.reused} already "
            f"there), audit up to seq {result.audit_seq}, in {result.seconds:.1f} s"
        )
        self.stdout.write(
            "keys are not in the backup: keep a `vigie keys export` file in another safe place"
        )
        if options["keep_daily"] is not None or options["keep_weekly"] is not None:
            self._prune(
                {
                    "dest": options["dest"],
                    "keep_daily": options["keep_daily"] or 0,
                    "keep_weekly": options["keep_weekly"] or 0,
                }
            )

    # --- verify ----------------------------------------------------------------------------

    def _verify(self, options: dict[str, Any]) -> None:
        if options["keys"] is not None:
            passphrase = key_export.passphrase_from_env_or_prompt(confirm=False)
            bundle = key_export.read_bundle(options["keys"], passphrase)
            public, keyring = bundle.public_key(), bundle.open_keyring(options["keys"])
        else:
            from vigie.audit.checkpoints import CheckpointError, load_signing_key

            try:
                public = load_signing_key().public_key()
                keyring = vault.get_keyring()
            except CheckpointError as exc:
                raise CommandError(
                    f"{exc}; on another machine, pass --keys FILE (a `vigie keys export`)",
                    returncode=2,
                ) from None
        console = Console(stderr=True)
        with _bar(console) as bar:
            tasks: dict[str, Any] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(_STAGES[stage], total=total or None)
                bar.update(tasks[stage], completed=done, total=total or None)

            report = verify_snapshot(
                options["dest"],
                public_key=public,
                keyring=keyring,
                snapshot_id=options["snapshot"],
                progress=advance,
            )
        self._record_verify(options["dest"], report)
        if options["json"]:
            self.stdout.write(json.dumps({**report.__dict__, "ok": report.ok}, indent=2))
        else:
            self._summary(report)
        if not report.ok:
            raise CommandError(
                f"backup verification failed: {len(report.problems)} problem(s), first: "
                f"{report.problems[0]}",
                returncode=1,
            )

    def _record_verify(self, dest: Path, report: VerifyReport) -> None:
        # Recorded in this installation's log when there is one (verify also runs on a
        # machine that only holds the backup and the keys export).
        from django.conf import settings
        from django.db import DatabaseError

        from vigie.audit.log import AuditUnavailable

        if not Path(settings.VIGIE_KEYRING_FILE).exists():
            return
        with contextlib.suppress(AuditUnavailable, DatabaseError):
            record(
                "backup.verify",
                outcome="success" if report.ok else "failure",
                extra={
                    "snapshot": report.snapshot_id,
                    "dest": str(dest),
                    "documents": report.documents,
                    "problems": len(report.problems),
                },
            )

    def _summary(self, report: VerifyReport) -> None:
        out = self.stdout
        out.write(f"snapshot {report.snapshot_id} ({report.engine})")
        out.write(
            f"  {report.blobs} blob(s), {_size(report.bytes)}; {report.documents} document(s) "
            f"and {report.pending} to reconcile decrypted and hashed"
        )
        out.write(
            f"  audit chain: {report.audit_events} event(s), "
            f"{report.audit_checkpoints} signed checkpoint(s)"
        )
        for warning in report.warnings:
            out.write(f"WARNING  {warning}")
        for problem in report.problems:
            out.write(f"PROBLEM  {problem}")
        if report.ok:
            out.write(f"backup OK ({report.seconds:.1f} s)")

    # --- restore ---------------------------------------------------------------------------

    def _restore(self, options: dict[str, Any]) -> None:
        passphrase = key_export.passphrase_from_env_or_prompt(confirm=False)
        bundle = key_export.read_bundle(options["keys"], passphrase)
        console = Console(stderr=True)
        labels = {"blobs": "Restoring blobs", "documents": "Verifying documents"}
        with _bar(console) as bar:
            tasks: dict[str, Any] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(labels[stage], total=total or None)
                bar.update(tasks[stage], completed=done, total=total or None)

            result = restore(
                options["dest"], bundle, snapshot_id=options["snapshot"], progress=advance
            )
        self.stdout.write(
            f"restored snapshot {result.snapshot_id}: {result.documents} document(s), "
            f"{result.pending} to reconcile, {result.blobs} blob(s) ({_size(result.bytes)}), "
            f"audit chain of {result.audit_events} event(s), in {result.seconds:.1f} s"
        )
        for problem in result.problems:
            self.stdout.write(f"PROBLEM  {problem}")
        if result.problems:
            raise CommandError(
                "the restored installation does not verify; it stays marked RESTORING and "
                "will not start",
                returncode=1,
            )
        record(
            "backup.restore",
            extra={"snapshot": result.snapshot_id, "dest": str(options["dest"])},
        )
        self.stdout.write("verified: every document decrypts to its hash, the audit chain holds")

    # --- prune and list --------------------------------------------------------------------

    def _prune(self, options: dict[str, Any]) -> None:
        from vigie.audit.checkpoints import load_signing_key

        result = prune(
            options["dest"],
            keep_daily=options["keep_daily"],
            keep_weekly=options["keep_weekly"],
            public=load_signing_key().public_key(),
        )
        self.stdout.write(
            f"kept {len(result.kept)} snapshot(s), removed {len(result.removed)} "
            f"and {result.removed_blobs} blob(s) no kept snapshot needs"
            + (
                f"; cleared {result.removed_partials} unfinished folder(s) of interrupted "
                "backups or prunes"
                if result.removed_partials
                else ""
            )
        )

    def _list(self, options: dict[str, Any]) -> None:
        dest = Destination(options["dest"])
        ids = dest.snapshot_ids()
        if not ids:
            self.stdout.write(f"no snapshot in {options['dest']}")
            return
        for snapshot_id in ids:
            try:
                manifest = dest.manifest(snapshot_id, None)
                body = manifest.body
                self.stdout.write(
                    f"{snapshot_id}  {body['engine']:<10}  {body.get('documents', '?')} "
                    f"document(s)  audit seq {body.get('audit', {}).get('head_seq', '?')}"
                )
            except ManifestError as exc:
                self.stdout.write(f"{snapshot_id}  unreadable manifest: {exc}")
