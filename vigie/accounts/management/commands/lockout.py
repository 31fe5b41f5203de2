"""`vigie lockout reset`: forget every counted attempt, for accounts and addresses alike."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import gettext as _

from vigie.accounts import events, lockout


class Command(BaseCommand):
    help = "Clear the login lockout counters (every account and source address)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("reset", help="forget every counted attempt")

    def handle(self, *args: Any, **options: Any) -> None:
        cleared = lockout.forget_all()
        # Lifting a lock is a security decision: it leaves a trace like the lock did.
        events.audit(events.LOCKOUT_RESET, outcome="success", extra={"counters": cleared})
        self.stdout.write(_("lockout counters cleared: %(count)d") % {"count": cleared})
