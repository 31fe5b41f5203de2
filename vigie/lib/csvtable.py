"""Reading a spreadsheet's CSV export into named fields, with a reason for every bad line.

The file
--------
UTF-8, with or without a byte-order mark (what Excel writes as "CSV UTF-8"). The delimiter is
`;` (French Excel) or `,`, whichever the header line uses more. The first non-empty line is a
header naming the columns, in any order; names are matched without regard to case, accents,
spaces or dashes, in English or French. Columns the import does not know are ignored (and
listed in the report). Empty lines, and lines whose every field is empty, are skipped.

`read_table` never raises: every problem is a `LineError` with the file's physical line
number (the header is line 1). The field parsers (`parse_date`, `fold`) raise ValueError with
a message fit for that list. Nothing here touches the database: the imports that use it are
`vigie.accounts.doctor_import` and `vigie.records.relationship_import`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.utils import timezone

# Keeps `IN (...)` lists under SQLite's bound-parameter limit on any version.
_CHUNK = 500
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
# What a spreadsheet user types in a cell meaning "no value".
EMPTY = {"", "-", "—"}


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str


# --------------------------------------------------------------------------------------
# Reading the table (no database)


@dataclass
class Table:
    """The file's records: `rows` are (line, {field: value}) for well-formed lines only."""

    columns: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """Lower-case, accents removed, blanks collapsed: for matching names, not for storing."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def _column_key(header: str) -> str:
    folded = fold(header).replace("°", "")
    return re.sub(r"[^a-z0-9]+", "_", folded).strip("_")


def decode(data: bytes) -> str | LineError:
    """The file as text (BOM removed), or the line of its first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return LineError(
            line, "the file is not UTF-8 text (save it as “CSV UTF-8” from the spreadsheet)"
        )
    return text.removeprefix("\ufeff")


def sniff_delimiter(header_line: str) -> str:
    """`;` or `,`, whichever separates more fields of the header line (outside quotes)."""
    counts = {";": 0, ",": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return ";" if counts[";"] > counts[","] else ","


# C0 controls but tab (a spreadsheet's CSV never holds them), and DEL.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | LineError]]:
    """(first physical line, fields or error) for each record of `text`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    consumed = 0
    while True:
        start = consumed + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            consumed = max(end, consumed + 1)
            if "unexpected end of data" in str(exc):
                yield start, LineError(start, "a quote opened here is never closed")
            else:
                yield start, LineError(start, f"not a well-formed CSV line ({exc})")
            continue
        end = reader.line_num
        consumed = end
        if any(_CONTROL.search(field) for field in fields):
            # No name, IPP or date holds one, and PostgreSQL refuses NUL in any text: say
            # so on this line instead of failing the whole import on the first query.
            yield start, LineError(start, "a value holds a control character (such as NUL)")
            continue
        if end > start:
            # A quoted field spanning lines: legal CSV, but no field here holds a line break,
            # so it is almost always a stray quote swallowing the next lines.
            yield (
                start,
                LineError(
                    start,
                    f"a quoted field runs over lines {start} to {end} (unbalanced quote?)",
                ),
            )
            continue
        yield start, fields


def read_table(text: str, columns: dict[str, tuple[str, ...]], required: Sequence[str]) -> Table:
    """Parse `text` into named fields; never raises on any input."""
    table = Table()
    header: list[str] | None = None
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        table.errors.append(LineError(1, "the file is empty: a header line is expected"))
        return table
    delimiter = sniff_delimiter(first)
    for line, fields in _records(text, delimiter):
        if isinstance(fields, LineError):
            table.errors.append(fields)
            if header is None:
                return table  # without a header no other line can be read
            continue
        if header is None:
            if not any(f.strip() for f in fields):
                continue
            header = fields
            if not _read_header(table, header, line, columns, required):
                return table
            continue
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            table.errors.append(
                LineError(
                    line,
                    f"{len(fields)} field(s) where the header has {len(header)} "
                    f"(is the delimiter “{delimiter}” used inside a value without quotes?)",
                )
            )
            continue
        table.rows.append(
            (line, {name: fields[index].strip() for name, index in table.columns.items()})
        )
    if header is None:
        table.errors.append(LineError(1, "the file is empty: a header line is expected"))
    return table


def _read_header(
    table: Table,
    header: list[str],
    line: int,
    columns: dict[str, tuple[str, ...]],
    required: Sequence[str],
) -> bool:
    aliases = {alias: name for name, names in columns.items() for alias in names}
    for index, raw in enumerate(header):
        key = _column_key(raw)
        name = aliases.get(key)
        if name is None:
            if raw.strip():
                table.ignored_columns.append(raw.strip())
            continue
        if name in table.columns:
            table.errors.append(
                LineError(line, f"column “{raw.strip()}” appears twice (both mean {name})")
            )
            return False
        table.columns[name] = index
    missing = [name for name in required if name not in table.columns]
    if missing:
        expected = "; ".join(f"{n} (or {', '.join(columns[n][1:])})" for n in missing)
        table.errors.append(LineError(line, f"missing column(s): {expected}"))
        return False
    return True


# --------------------------------------------------------------------------------------
# Field parsers (no database)


def parse_date(value: str, *, end_of_day: bool = False) -> datetime:
    """An aware datetime (clinic time) from `YYYY-MM-DD`, `DD/MM/YYYY` or an ISO date-time.

    A date alone means the start of that day, or with `end_of_day` the start of the next
    (so "until 31/12" includes the 31st). Raises ValueError with a readable message.
    """
    text = value.strip()
    day: date | None = None
    french = _FRENCH_DATE.fullmatch(text)
    try:
        if french:
            day = date(int(french.group(3)), int(french.group(2)), int(french.group(1)))
        elif _ISO_DATE.fullmatch(text):
            day = date.fromisoformat(text)
        elif _ISO_DATE.match(text) and len(text) <= 32:
            moment = datetime.fromisoformat(text)
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            return moment
    except (ValueError, OverflowError):
        raise ValueError(f"“{text}” is not a valid date") from None
    if day is None:
        raise ValueError(f"“{text}” is not a date (expected DD/MM/YYYY or YYYY-MM-DD)")
    if end_of_day:
        try:
            day += timedelta(days=1)
        except OverflowError:
            raise ValueError(f"“{text}” is too far in the future") from None
    return timezone.make_aware(datetime.combine(day, time.min))


def chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
