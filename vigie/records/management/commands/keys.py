"""`vigie keys init|list|rotate|rewrap|remove KEY_ID|export FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from vigie import vault
from vigie.backup import keys as key_export
from vigie.records import keys


def _progress(console: Console) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class Command(BaseCommand):
    help = "Manage the keyring: create it, rotate the key-encryption key, remove old keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("init", help="create the secret key and keyring if they do not exist")
        sub.add_parser("list", help="list keys and how many data keys each wraps")
        sub.add_parser("rotate", help="add a new active key and re-wrap every data key")
        sub.add_parser("rewrap", help="finish an interrupted rotation (re-wrap to active key)")
        remove = sub.add_parser("remove", help="remove a key no data key uses any more")
        remove.add_argument("kek_id")
        export = sub.add_parser(
            "export",
            help="write the keys, encrypted with a passphrase, to FILE (for restores)",
        )
        export.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        console = Console(stderr=True)
        action = options["action"]
        try:
            if action == "init":
                self._init()
            elif action == "list":
                self._list()
            elif action in {"rotate", "rewrap"}:
                with _progress(console) as bar:
                    task = bar.add_task("Re-wrapping data keys", total=None)

                    def advance(done: int, total: int) -> None:
                        bar.update(task, completed=done, total=total)

                    if action == "rotate":
                        result = keys.rotate(progress=advance)
                        self.stdout.write(
                            f"new active key {result.new_kek_id}; "
                            f"{result.rewrapped} data key(s) re-wrapped"
                        )
                    else:
                        count = keys.rewrap_all(progress=advance)
                        self.stdout.write(f"{count} data key(s) re-wrapped")
            elif action == "remove":
                keys.remove_key(options["kek_id"])
                self.stdout.write(f"key {options['kek_id']} removed")
            elif action == "export":
                self._export(options["file"])
        except (vault.VaultError, key_export.KeysExportError) as exc:
            raise CommandError(str(exc), returncode=2) from None

    def _export(self, path: Path) -> None:
        from vigie.audit.checkpoints import CheckpointError
        from vigie.audit.log import record

        try:
            bundle = key_export.collect()
        except CheckpointError as exc:
            raise key_export.KeysExportError(str(exc)) from None
        passphrase = key_export.passphrase_from_env_or_prompt(confirm=True)
        key_export.export_bundle(bundle, path, passphrase)
        record("keys.export", extra={"file": str(path)})
        self.stdout.write(f"keys exported to {path} (mode 0600, Argon2id + AES-256-GCM)")
        if bundle.secret_key is None:
            self.stdout.write(
                "the secret key comes from the environment and is not in the export: "
                "keep it with the deployment's configuration"
            )
        self.stdout.write(
            "Keep this file and its passphrase apart from the backups: a restore needs both."
        )

    def _init(self) -> None:
        from vigie.startup import bootstrap_home

        created = bootstrap_home()
        for path in created:
            self.stdout.write(f"created {path} (mode 0600)")
        if not created:
            self.stdout.write(f"nothing to do: {Path(settings.VIGIE_KEYRING_FILE)} already exists")
        self.stdout.write(
            "Back up the keyring apart from the data: without it no document can be read."
        )

    def _list(self) -> None:
        ring = vault.get_keyring()
        usage = keys.key_usage()
        table = Table("key", "active", "data keys")
        for kek_id in ring.key_ids:
            table.add_row(
                kek_id, "yes" if kek_id == ring.active_id else "", str(usage.get(kek_id, 0))
            )
        for kek_id in sorted(set(usage) - set(ring.key_ids)):
            table.add_row(kek_id, "MISSING FROM KEYRING", str(usage[kek_id]))
        Console().print(table)
