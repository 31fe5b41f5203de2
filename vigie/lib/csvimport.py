"""What the CSV imports share: check every line, then create everything or nothing.

Every line is checked first and every error collected, with the file's physical line number
(the header is line 1) and a reason. If any line is wrong, nothing is imported. Otherwise
everything is created in one transaction, with one audit event per created item (written by
the import's `create`) and one summary event (`import.csv`) carrying the file's SHA-256: all
commit together or not at all. The validation is repeated inside that transaction, so what
is written is what was checked.

The imports themselves are `vigie.accounts.doctor_import` and
`vigie.records.relationship_import`; the commands that run them share
`vigie.records.management.commands._csv_import`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from django.db import transaction

from vigie.lib.csvtable import LineError, Table, decode

Kind = Literal["doctors", "relationships"]
Progress = Callable[[int, int], None]
Row = TypeVar("Row")


class Recorder(Protocol):
    """`vigie.audit.log.record`, handed in by the caller: lib depends on no app."""

    def __call__(self, action: str, *, extra: dict[str, Any]) -> object: ...


@dataclass
class ImportReport:
    kind: Kind
    file_sha256: str
    dry_run: bool
    errors: list[LineError] = field(default_factory=list)
    good_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    # One description per planned (dry run) or created item, in file order.
    items: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    # (username, one-time code, expiry) of each new account: printed once, never in as_json().
    invitations: list[tuple[str, str, datetime]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file_sha256": self.file_sha256,
            "dry_run": self.dry_run,
            "outcome": ("valid" if self.dry_run else "imported") if self.ok else "rejected",
            "good_lines": self.good_lines,
            "bad_lines": len({e.line for e in self.errors}),
            "created": self.created,
            "ignored_columns": self.ignored_columns,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
            "items": self.items,
        }


def run_import(
    kind: Kind,
    data: bytes,
    *,
    validate: Callable[[str], tuple[Table, list[Row]]],
    describe: Callable[[Row], dict[str, Any]],
    create: Callable[[list[Row], ImportReport], None],
    record: Recorder,
    dry_run: bool,
    operator: str,
) -> ImportReport:
    """Check `data` with `validate`; unless `dry_run` or a line is wrong, `create` the rows
    and `record` the summary, all in one transaction."""
    report = ImportReport(kind=kind, file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run)
    text = decode(data)
    if isinstance(text, LineError):
        report.errors.append(text)
        return report

    def check() -> list[Row]:
        table, rows = validate(text)
        report.errors = table.errors
        report.ignored_columns = table.ignored_columns
        report.good_lines = len(rows)
        report.items = [describe(r) for r in rows]
        return rows

    if dry_run:
        check()
        return report
    with transaction.atomic():
        # Checked again inside the transaction that writes (on SQLite it holds the write
        # lock), so nothing granted meanwhile can slip between the check and the insert.
        rows = check()
        if report.errors:
            return report
        create(rows, report)
        if not report.created:
            return report
        record(
            "import.csv",
            extra={
                "kind": kind,
                "file_sha256": report.file_sha256,
                "created": report.created,
                "by": operator,
            },
        )
    return report
