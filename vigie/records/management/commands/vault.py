"""`vigie vault fsck [--repair]`: check that every row has a valid blob and vice versa.
`vigie vault migrate --to URL`: copy every blob to another store (vigie/vault/migrate.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress

from vigie import vault
from vigie.records.fsck import fsck
from vigie.vault.migrate import migrate, target_store


class Command(BaseCommand):
    help = "Check the vault against the database."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("fsck", help="find orphan blobs and rows with a bad blob")
        check.add_argument(
            "--repair",
            action="store_true",
            help="remove orphans, temp files and broken rows (recorded in a JSON report first)",
        )

        move = sub.add_parser(
            "migrate", help="copy every blob to another store (resumable, each copy verified)"
        )
        move.add_argument(
            "--to",
            required=True,
            metavar="URL",
            help="s3://BUCKET/PREFIX (server and credentials from VIGIE_S3_*) or a folder",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "migrate":
            self._migrate(options["to"])
            return
        console = Console(stderr=True)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("Decrypting and hashing documents", total=None)
            report = fsck(
                repair=options["repair"],
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        out = self.stdout
        out.write(f"{report.checked} document(s) checked")
        for pk in report.missing:
            out.write(f"MISSING BLOB  document {pk}")
        for pk, reason in report.corrupt:
            out.write(f"CORRUPT       document {pk}: {reason}")
        for blob_id in report.orphan_blobs:
            out.write(f"ORPHAN BLOB   {blob_id}")
        for path in report.stale_temp_files:
            out.write(f"STALE TEMP    {path}")
        if report.young_orphans:
            out.write(
                f"{len(report.young_orphans)} recent blob(s) without a row left alone "
                "(an ingest may be in progress)"
            )
        if report.clean:
            out.write("vault OK")
            return
        if options["repair"]:
            if report.removed_report is not None:
                out.write(f"removed rows are listed in {report.removed_report}")
            out.write("repaired")
            return
        raise CommandError(
            "the vault has problems (see above); --repair removes them", returncode=1
        )

    def _migrate(self, url: str) -> None:
        try:
            source = vault.get_blob_store()
            target = target_store(url)
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task("Copying and verifying blobs", total=None)
                result = migrate(
                    source,
                    target,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        except vault.VaultError as exc:
            raise CommandError(f"{exc} (run the command again to resume)", returncode=2) from None
        self.stdout.write(
            f"{result.blobs} blob(s) in {source.describe()}: {result.copied} copied "
            f"({result.bytes_copied} bytes), {result.already_there} already in "
            f"{target.describe()} and identical"
        )
        self.stdout.write(
            "every blob verified; stop ingest, run once more, then set VIGIE_BLOB_STORE "
            "to the new store"
        )
