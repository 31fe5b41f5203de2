"""`vigie once NAME COMMAND [ARGS...]`: run a Vigie command on one node of the group only.

Every node of a group carries the same timers (the nightly `backup create`, say); each runs
`vigie once backup backup create …`, and only the node that takes the cluster-wide
singleton NAME (vigie/lib/singleton.py) runs the command, holding the lock until it ends;
the others say so and exit 0, so their timers do not count a failure. On one machine the
lock is a file under VIGIE_HOME and the command simply runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from vigie.lib import singleton


class Command(BaseCommand):
    help = "Run a Vigie command only if no other node holds the job's cluster-wide lock."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", choices=singleton.KNOWN, help="the job's lock")
        parser.add_argument("command", help="the Vigie command to run, e.g. backup")
        parser.add_argument(
            "command_args", nargs=argparse.REMAINDER, metavar="args", help="its arguments"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name, command = options["name"], options["command"]
        if command == "once":
            raise CommandError(_("`vigie once` cannot run itself"), returncode=2)
        with singleton.singleton(name) as held:
            if not held:
                self.stdout.write(
                    _("skipped: another node holds %(name)s (see `vigie check`)") % {"name": name}
                )
                return
            call_command(command, *options["command_args"])
