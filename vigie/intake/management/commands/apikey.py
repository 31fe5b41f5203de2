"""`vigie apikey create NAME --source SYSTEM [--network CIDR ...] | list | revoke NAME`.

`create` prints the key once, alone on stdout (so `KEY=$(vigie apikey create ...)` works),
with the warning on stderr; only its hash is kept. Errors end with exit code 2 and one line.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _

from vigie.intake.apikeys import ApiKeyError, create_key, revoke
from vigie.intake.management.commands._credentials import CredentialCommand
from vigie.intake.models import ApiKey
from vigie.lib.cli import command_operator


class Command(CredentialCommand):
    help = "Manage API keys for sending systems: create (shown once), list, revoke."
    model = ApiKey
    revoke_one = staticmethod(revoke)

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
        self.add_list_and_revoke(
            sub, list_help="list keys (never their secret)", revoke_help="revoke a key by name"
        )

    def make(self, action: str, options: dict[str, Any]) -> None:
        self._create(options["name"], options["source"], options["network"])

    def not_found(self, name: str) -> str:
        return _("no API key named %(name)r") % {"name": name}

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
            state = self.state(key)
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
            self.stdout.write(
                f"{key.name}\tvk_{key.prefix}_…\t{key.source_system}\t"
                f"{','.join(key.allowed_networks) or '*'}\t{state}\t{used}"
            )
