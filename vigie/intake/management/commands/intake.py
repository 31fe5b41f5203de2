"""`vigie intake mllp|folder`: the long-running intake channels (HL7 v2 over MLLP, hot folder).

Each channel's module declares its own options (`configure(parser)`) and runs
(`run(options, stdout)`); this command only dispatches, so the channels stay independent.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

CHANNELS = {
    "mllp": ("vigie.intake.hl7.server", "receive HL7 v2 ORU^R01 results over MLLP"),
    "folder": (
        "vigie.intake.management.commands._folder",
        "take PDFs (with a JSON sidecar) dropped in a folder",
    ),
}


class Command(BaseCommand):
    help = "Run an intake channel: HL7 v2 over MLLP, or a hot folder."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="channel", required=True)
        for name, (module, text) in CHANNELS.items():
            import_module(module).configure(sub.add_parser(name, help=text))

    def handle(self, *args: Any, **options: Any) -> None:
        module, _text = CHANNELS[options["channel"]]
        import_module(module).run(options, self.stdout)
