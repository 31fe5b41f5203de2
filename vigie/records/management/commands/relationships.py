"""`vigie relationships import FILE [--dry-run] [--report REPORT.json]`.

Grants doctors access to patients in bulk from a CSV file; see
`vigie.records.relationship_import` for the format. Exit codes: 0 imported (or, with
--dry-run, every line is valid), 1 some lines are wrong and nothing was imported, 2 the
import could not run (unreadable file, database or audit log unavailable — nothing was
imported either).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from vigie.records.management.commands._csv_import import add_import_parser, run_import_command

HELP = """\
Import care relationships from a CSV file (UTF-8, ';' or ',' delimited, header line):
  doctor;patient_ipp;role;valid_from;valid_until
  dr.martin;IPP0001234;treating;01/01/2027;31/12/2027
patient_ins may replace or accompany patient_ipp; role is treating, referring or consulting
(or "médecin traitant", "adresseur", "consultant"); dates are DD/MM/YYYY or YYYY-MM-DD,
valid_until is optional and inclusive. Every line is checked first: if any is wrong, each is
reported with its line number and nothing is imported (exit code 1). Otherwise all are
created in one transaction, each grant audited (access.grant)."""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        add_import_parser(parser, HELP, "import care relationships from a CSV file")

    def handle(self, *args: Any, **options: Any) -> None:
        run_import_command(self, "relationships", options)
