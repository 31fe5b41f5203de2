"""`vigie canary create [--count N] [--documents N]` and `vigie canary list`."""

from __future__ import annotations

import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from rich.console import Console
from rich.table import Table

from vigie.guard.decoys import create_canaries
from vigie.guard.models import Canary
from vigie.lib.singleton import DECOYS, singleton
from vigie.records.ingest import IngestError
from vigie.records.models import Document


class Command(BaseCommand):
    help = "Seed decoy patients and documents (any touch raises an alarm) and list them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="seed decoy patients with their documents")
        create.add_argument("--count", type=int, default=1, help="decoy patients (default 1)")
        create.add_argument(
            "--documents", type=int, default=2, help="documents per decoy patient (default 2)"
        )
        sub.add_parser("list", help="list the decoys and how often each was touched")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            self._create(options["count"], options["documents"])
        else:
            self._list()

    def _create(self, count: int, documents: int) -> None:
        if not 1 <= count <= 100:
            raise CommandError(_("--count must be between 1 and 100"), returncode=2)
        if not 1 <= documents <= 20:
            raise CommandError(_("--documents must be between 1 and 20"), returncode=2)
        # One seeding at a time across the group (each picks names against the existing ones).
        with singleton(DECOYS) as held:
            if not held:
                raise CommandError(
                    _("another node is creating decoys now (see `vigie check`); try later"),
                    returncode=2,
                )
            try:
                created = create_canaries(count, documents_per_patient=documents)
            except IngestError as exc:
                raise CommandError(
                    _("could not store a decoy document: %(error)s") % {"error": exc},
                    returncode=2,
                ) from None
        for canary in created:
            self.stdout.write(
                _("created %(label)s: patient IPP %(ipp)s with %(documents)d document(s)")
                % {"label": canary, "ipp": canary.patient.ipp, "documents": documents}
            )
        self.stdout.write(
            _("Decoys are in nobody's scope: any touch raises a critical alert. Never open one.")
        )

    def _list(self) -> None:
        canaries = list(Canary.objects.select_related("patient").order_by("pk"))
        if not canaries:
            self.stdout.write(_("no decoys; create some with `vigie canary create`"))
            return
        table = Table(
            _("label"),
            _("IPP"),
            _("documents"),
            _("created"),
            _("touches"),
            _("last touched"),
        )
        for canary in canaries:
            table.add_row(
                str(canary),
                canary.patient.ipp,
                str(Document.objects.filter(patient_id=canary.patient_id).count()),
                f"{canary.created_at:%Y-%m-%d %H:%M}",
                str(canary.touches),
                f"{canary.last_touched_at:%Y-%m-%d %H:%M:%S}" if canary.last_touched_at else "-",
            )
        # Rendered to text first: Django's OutputWrapper is what tests capture.
        console = Console(file=io.StringIO(), width=120, record=True)
        console.print(table)
        self.stdout.write(console.export_text(), ending="")
