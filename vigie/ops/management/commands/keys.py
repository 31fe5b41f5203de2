"""`vigie keys init|list|rotate|rewrap|remove KEY_ID|export FILE|move DEST`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from vigie import vault
from vigie.backup import keys as key_export
from vigie.lib.singleton import KEY_ROTATION, singleton
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
        move = sub.add_parser(
            "move",
            help="move the keys out of the data tree to the keys folder DEST (verified, "
            "safe to run again if interrupted)",
        )
        move.add_argument("dest", type=Path)
        move.add_argument(
            "--from",
            dest="source",
            type=Path,
            default=None,
            help="the folder holding the keys now (default: VIGIE_KEYS_DIR, else the old "
            "place VIGIE_HOME/keyring)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        console = Console(stderr=True)
        action = options["action"]
        from vigie.vault import layout

        if action in {"init", "rotate", "rewrap", "remove"} and (
            settings.VIGIE_KEYS_SOURCE == layout.SOURCE_CREDENTIALS
        ):
            raise CommandError(
                f"the keys come from systemd credentials ({settings.VIGIE_KEYS_DIR}, read-only):"
                f" run `vigie keys {action}` on the keys folder the credentials were made from, "
                "then encrypt them again with `systemd-creds encrypt` (docs/operations.md)",
                returncode=2,
            )
        if action in {"rotate", "rewrap", "remove"}:
            # One re-wrap at a time across the group: two would each add an active key.
            with singleton(KEY_ROTATION) as held:
                if not held:
                    raise CommandError(
                        _("another node is changing the keys now (see `vigie check`); try later"),
                        returncode=2,
                    )
                self._run(action, options, console)
            return
        self._run(action, options, console)

    def _run(self, action: str, options: dict[str, Any], console: Console) -> None:
        from vigie.startup import StartupError

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
            elif action == "move":
                self._move(options["dest"], options["source"])
        except (vault.VaultError, key_export.KeysExportError, StartupError) as exc:
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

    def _move(self, dest: Path, source: Path | None) -> None:
        from vigie.audit.log import AuditUnavailable, record

        result = keys.move_keys(dest, source)
        if result.source == result.dest:
            self.stdout.write(f"nothing to do: the keys are already in {result.dest}")
        else:
            for name in result.copied:
                self.stdout.write(f"copied   {result.source / name} -> {result.dest / name}")
            if result.verified_document:
                self.stdout.write(
                    f"verified the keyring in {result.dest} decrypts document "
                    f"{result.verified_document}"
                )
            else:
                self.stdout.write(f"verified the keyring in {result.dest} (no documents yet)")
            for name in result.removed:
                self.stdout.write(f"removed  {result.source / name}")
            # A decryption was done to verify: it is recorded, like every use of the keys.
            try:
                record(
                    "keys.move",
                    extra={
                        "from": str(result.source),
                        "to": str(result.dest),
                        "verified_document": result.verified_document,
                    },
                )
            except AuditUnavailable as exc:
                # The keys are already moved; say so rather than hide it behind a traceback.
                self.stderr.write(f"warning: the move is done but was not audited: {exc}")
        configured = Path(settings.VIGIE_KEYS_DIR)
        if configured.resolve() != result.dest.resolve():
            self.stdout.write(
                f"now set VIGIE_KEYS_DIR={result.dest} in Vigie's environment "
                "(/etc/vigie/vigie.env), then restart the services"
            )

    def _init(self) -> None:
        from vigie.startup import bootstrap_home

        created = bootstrap_home()
        for path in created:
            self.stdout.write(f"created {path} (mode 0600)")
        if not created:
            self.stdout.write(f"nothing to do: {Path(settings.VIGIE_KEYRING_FILE)} already exists")
        self.stdout.write(
            f"The keys are in {settings.VIGIE_KEYS_DIR}, apart from the data; keep a "
            "`vigie keys export` of them apart from the backups: without them no document "
            "can be read."
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
