"""What `vigie doctors import` and `vigie relationships import` share: the arguments, the
run with its progress bar, the printed report and the exit codes.

The leading underscore keeps Django from taking this module for a command of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigie.accounts.doctor_import import import_doctors
from vigie.lib.cli import command_operator
from vigie.lib.csvimport import ImportReport, Kind
from vigie.records.relationship_import import import_relationships

if TYPE_CHECKING:
    from django.core.management.base import BaseCommand, CommandParser

# A clinic's whole roster is a few thousand lines; anything far bigger is the wrong file.
MAX_FILE_BYTES = 20 * 1024 * 1024


# --------------------------------------------------------------------------------------
# The report, as the commands print it (English, like every CLI output)

FIRST_LOGIN = (
    "The new accounts have no password (none is ever taken from a spreadsheet, and no "
    "administrator ever chooses one). Hand each doctor their invitation code below in person "
    "(it is shown only now and is valid 72 hours); at /accounts/invitation/ the doctor chooses "
    "a password, then enrols an authenticator app (QR code) and receives ten recovery codes. "
    "A lost or expired code: reset the account in the admin (Users → select → “Reset "
    "credentials”), which issues a new one."
)


def report_lines(report: ImportReport) -> list[str]:
    """The human report: every bad line with its reason, then what was (or would be) done."""
    noun = "account" if report.kind == "doctors" else "care relationship"
    lines: list[str] = []
    if report.ignored_columns:
        lines.append(f"ignored column(s): {', '.join(report.ignored_columns)}")
    if report.errors:
        lines.extend(f"line {e.line}: {e.reason}" for e in report.errors)
        bad = len({e.line for e in report.errors})
        lines.append(
            f"{bad} bad line(s), {report.good_lines} good line(s): nothing was imported "
            "(fix the bad lines and run the import again)"
        )
        return lines
    if report.dry_run:
        for item in report.items:
            lines.append(_describe(report.kind, item, "would create"))
        lines.append(
            f"dry run: {report.good_lines} {noun}(s) would be created; nothing was changed"
        )
        return lines
    for item in report.items:
        lines.append(_describe(report.kind, item, "created"))
    lines.append(f"{report.created} {noun}(s) created (file SHA-256 {report.file_sha256})")
    if report.kind == "doctors" and report.created:
        lines.append(FIRST_LOGIN)
        for username, code, expires_at in report.invitations:
            lines.append(
                f"invitation for {username}: {code} (valid until {expires_at:%Y-%m-%d %H:%M} UTC)"
            )
    return lines


def _describe(kind: Kind, item: dict[str, Any], verb: str) -> str:
    if kind == "doctors":
        email = f" <{item['email']}>" if item["email"] else ""
        return (
            f"line {item['line']}: {verb} {item['username']} "
            f"({item['family_name'].upper()} {item['given_names']}{email})"
        )
    return (
        f"line {item['line']}: {verb} {item['doctor']} → {item['patient_ipp']} "
        f"({item['role']}) {item['period']}"
    )


# --------------------------------------------------------------------------------------
# The two commands' shared body


EXIT_CODES = """\
exit codes: 0 imported (with --dry-run: every line is valid), 1 some lines are wrong and
nothing was imported, 2 the import could not run (unreadable file, database or audit log
unavailable) and nothing was imported."""


def add_import_parser(parser: CommandParser, description: str, summary: str) -> None:
    """The `import FILE [--dry-run] [--report FILE]` subcommand, with its help unwrapped."""
    import argparse

    from django.core.management.base import DjangoHelpFormatter

    class Formatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    parser.formatter_class = Formatter
    parser.description = description
    parser.epilog = EXIT_CODES
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser(
        "import",
        help=summary,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=Formatter,
    )
    imp.add_argument("file", help="the CSV file (UTF-8)")
    imp.add_argument(
        "--dry-run", action="store_true", help="check every line and report; change nothing"
    )
    imp.add_argument("--report", metavar="REPORT.json", help="also write the report as JSON")


def run_import_command(command: BaseCommand, kind: Kind, options: dict[str, Any]) -> None:
    """`vigie doctors|relationships import FILE [--dry-run] [--report FILE]`."""
    import json
    from pathlib import Path

    from django.core.management.base import CommandError
    from django.db import DatabaseError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from vigie.audit.log import AuditUnavailable

    path = Path(options["file"])
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", returncode=2) from None
    if len(data) > MAX_FILE_BYTES:
        raise CommandError(
            f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not an import file",
            returncode=2,
        )
    runner = import_doctors if kind == "doctors" else import_relationships
    label = "Creating accounts" if kind == "doctors" else "Creating care relationships"
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    try:
        with bar:
            report = runner(
                data, dry_run=options["dry_run"], operator=command_operator(), progress=advance
            )
    except (DatabaseError, AuditUnavailable) as exc:
        raise CommandError(
            f"the import failed and was rolled back, nothing was imported: {exc}", returncode=2
        ) from None
    for line in report_lines(report):
        command.stdout.write(line)
    if options.get("report"):
        target = Path(options["report"])
        body = dict(report.as_json(), file=str(path))
        try:
            target.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", "utf-8")
        except OSError as exc:
            raise CommandError(
                f"cannot write the report {target}: {exc.strerror or exc}", returncode=2
            ) from None
    if report.errors:
        bad = len({e.line for e in report.errors})
        raise CommandError(f"{bad} bad line(s) in {path}: nothing was imported", returncode=1)
