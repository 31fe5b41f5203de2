"""`vigie doctors import FILE [--dry-run] [--report REPORT.json]`.

Creates doctor accounts in bulk from a CSV file; see `vigie.accounts.doctor_import` for the
format. No password is ever read from the file: the accounts are created with an unusable
password and a one-time invitation each, whose code this command prints once for the operator
to hand over; with it the doctor chooses a password and enrols an authenticator.
Exit codes: 0 imported (or, with --dry-run, every line is valid), 1 some lines are wrong and
nothing was imported, 2 the import could not run (nothing was imported either).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from vigie.records.management.commands._csv_import import add_import_parser, run_import_command

HELP = """\
Create doctor accounts from a CSV file (UTF-8, ';' or ',' delimited, header line):
  username;family_name;given_names;email;rpps
  dr.martin;MARTIN;Claire;claire.martin@example.org;10001234567
French headers work too (identifiant;nom;prénom;courriel); email and rpps are optional (the
RPPS number lets the doctor sign in with Pro Santé Connect). An existing username is an error (accounts are never updated). Every line
is checked first: if any is wrong, each is reported with its line number and nothing is
imported (exit code 1). Accounts get no password: an administrator sets a first one in the
admin, and the doctor enrols an authenticator at first login."""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        add_import_parser(parser, HELP, "create doctor accounts from a CSV file")

    def handle(self, *args: Any, **options: Any) -> None:
        run_import_command(self, "doctors", options)
