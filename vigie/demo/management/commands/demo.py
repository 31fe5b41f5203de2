"""`vigie demo [--no-serve]`: migrate, seed the synthetic clinic once, print logins, serve."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from vigie.accounts.models import User
from vigie.demo.seed import credentials_path, seed


class Command(BaseCommand):
    help = "Set up and run the demo clinic (VIGIE_MODE=demo only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-serve", action="store_true", help="seed and exit")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.VIGIE_MODE != "demo":
            raise CommandError("the demo runs only with VIGIE_MODE=demo", returncode=2)
        console = Console(stderr=True)
        call_command("migrate", interactive=False, verbosity=0)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("Seeding the demo clinic", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            logins = seed(progress=advance)
        table = Table(title=f"Demo logins (also in {credentials_path()})")
        psc = settings.VIGIE_PSC_ENABLED
        for column in ("username", "password", "role", *(["PSC card (test)"] if psc else [])):
            table.add_column(column)
        cards = dict(User.objects.exclude(rpps=None).values_list("username", "rpps"))
        for login in logins:
            # What to type at the local test provider: PSC's SubjectNameID, "8" + RPPS.
            card = [f"8{cards[login.username]}" if login.username in cards else ""]
            table.add_row(login.username, login.password, login.role, *(card if psc else []))
        Console().print(table)
        if options["no_serve"]:
            return
        call_command("serve", host=options["host"], port=options["port"])
