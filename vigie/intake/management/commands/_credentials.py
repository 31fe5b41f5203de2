"""What `vigie apikey` and `vigie mllpsender` share: each manages one kind of sender
credential with a first action that makes one (`create`, `add`), `list` and `revoke NAME`.

The leading underscore keeps Django from taking this module for a command of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Model
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from vigie.lib.cli import command_operator


class Revocable(Protocol):
    name: str
    revoked_at: Any


class CredentialCommand(BaseCommand):
    """`handle` runs `self._<action>`; `_revoke` is the same for every kind of credential."""

    model: type[Model]
    # The service function that revokes one row (audited), as a staticmethod.
    revoke_one: Callable[..., Any]

    @staticmethod
    def add_list_and_revoke(sub: Any, *, list_help: str, revoke_help: str) -> None:
        sub.add_parser("list", help=list_help)
        sub.add_parser("revoke", help=revoke_help).add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options.pop("action")
        if action == "list":
            self._list()
        elif action == "revoke":
            self._revoke(options["name"])
        else:
            self.make(action, options)

    def make(self, action: str, options: dict[str, Any]) -> None:
        raise NotImplementedError

    def _list(self) -> None:
        raise NotImplementedError

    def not_found(self, name: str) -> str:
        raise NotImplementedError

    @staticmethod
    def state(row: Revocable) -> str:
        if row.revoked_at:
            return _("revoked %(when)s") % {"when": row.revoked_at.isoformat(timespec="seconds")}
        return pgettext("an API key", "active")

    def _revoke(self, name: str) -> None:
        row = self.model._default_manager.filter(name=name).first()
        if row is None:
            raise CommandError(self.not_found(name), returncode=2)
        if row.revoked_at is not None:  # type: ignore[attr-defined]
            self.stdout.write(_("%(name)s was already revoked") % {"name": name})
            return
        self.revoke_one(row, by=command_operator())
        self.stdout.write(_("%(name)s revoked") % {"name": name})
