"""`vigie apikey create NAME --source SYSTEM [--network CIDR ...] | list | revoke NAME`.

`create` prints the key once, alone on stdout (so `KEY=$(vigie apikey create ...)` works),
with the warning on stderr; only its hash is kept. Errors end with exit code 2 and one line.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from vigie.intake.apikeys import ApiKeyError, create_key, revoke
from vigie.intake.models import ApiKey
from vigie.lib.cli import command_operator


class Command(BaseCommand):
    help = "Manage API keys for sending systems: create (shown once), list, revoke."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key; it is printed once")
        create.add_argument("name", help="the system the key is for (unique)")
        create.add_argument(
            "--source", required=True, help="source system recorded on its documents"
        )
        create.add_argument(
            "--network",
            action="append",
            default=[],
            metavar="CIDR",
            help="allow only this address or network (repeatable; default: any)",
        )
        sub.add_parser("list", help="list keys (never their secret)")
        revoke_parser = sub.add_parser("revoke", help="revoke a key by name")
        revoke_parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            self._create(options["name"], options["source"], options["network"])
        elif action == "list":
            self._list()
        elif action == "revoke":
            self._revoke(options["name"])

    def _create(self, name: str, source: str, networks: list[str]) -> None:
        try:
            key, text = create_key(
                name, source_system=source, networks=networks, by=command_operator()
            )
        except ApiKeyError as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.stderr.write(
            _(
                "API key %(name)s created (source %(source)s, networks: %(networks)s). "
                "Copy it now: it is shown only once."
            )
            % {
                "name": key.name,
                "source": key.source_system,
                "networks": ", ".join(key.allowed_networks) or _("any"),
            }
        )
        self.stdout.write(text)

    def _list(self) -> None:
        keys = list(ApiKey.objects.order_by("name"))
        if not keys:
            self.stdout.write(_("no API key"))
            return
        for key in keys:
            state = (
                _("revoked %(when)s") % {"when": key.revoked_at.isoformat(timespec="seconds")}
                if key.revoked_at
                else _("active")
            )
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
            self.stdout.write(
                f"{key.name}\tvk_{key.prefix}_…\t{key.source_system}\t"
                f"{','.join(key.allowed_networks) or '*'}\t{state}\t{used}"
            )

    def _revoke(self, name: str) -> None:
        key = ApiKey.objects.filter(name=name).first()
        if key is None:
            raise CommandError(_("no API key named %(name)r") % {"name": name}, returncode=2)
        if key.revoked_at is not None:
            self.stdout.write(_("%(name)s was already revoked") % {"name": name})
            return
        revoke(key, by=command_operator())
        self.stdout.write(_("%(name)s revoked") % {"name": name})
