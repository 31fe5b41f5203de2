"""A patient's lab history ("antériorités"): every analyte across reports, and its chart.

Pure arrangement of result sets the door has already decided, audited and decrypted: rows
are analytes, columns are reports (newest first). An analyte is the same across reports by
its code in its coding system (LOINC or the lab's), else by its label; and a value is
compared only with values in the same unit: the same analyte in another unit is another
row, said so, never drawn on the same axis. A reference range that differs from the newest
one is shown in the cell, not hidden behind the row's.

The chart is data for an inline SVG the template draws (no script, no style attribute: the
CSP allows neither), with its points, the reference band and a text alternative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from vigie.records.models import Document
from vigie.records.results import Observation, ResultSet

CHART_WIDTH = 240
CHART_HEIGHT = 64
_PAD = 6


@dataclass(frozen=True)
class Column:
    document: Document
    day: date
    source: str


@dataclass
class Cell:
    observation: Observation
    # This cell's reference range differs from the row's newest one.
    range_changed: bool = False
    # The same analyte again in the same report (a repeat, a correction): shown, not charted.
    also: list[Observation] = field(default_factory=list)


@dataclass(frozen=True)
class Point:
    # Coordinates as text: a template would localise a float ("12,5" in French) and
    # break the SVG.
    x: str
    y: str
    abnormal: bool
    label: str


@dataclass(frozen=True)
class Chart:
    points: list[Point]
    path: str
    # The reference band (y of its top edge, its height), when the newest range has both.
    band: tuple[str, str] | None
    summary: str
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT


@dataclass
class Row:
    key: tuple[str, str]
    unit: str
    label: str = ""
    code: str = ""
    code_system: str = ""
    reference_range: str = ""
    cells: list[Cell | None] = field(default_factory=list)
    # Another row holds the same analyte in another unit.
    other_units: bool = False
    chart: Chart | None = None

    @property
    def abnormal_count(self) -> int:
        return sum(1 for c in self.cells if c is not None and c.observation.abnormal)


@dataclass(frozen=True)
class History:
    columns: list[Column]
    rows: list[Row]


def _unit_key(unit: str) -> str:
    return " ".join(unit.split()).casefold()


def build_history(found: list[tuple[Document, ResultSet]]) -> History:
    """`found` newest first (as the door returns it) → the table and its charts."""
    columns = [
        Column(document, results.clinical_date or document.clinical_date, results.source)
        for document, results in found
    ]
    rows: dict[tuple[tuple[str, str], str], Row] = {}
    for index, (_document, results) in enumerate(found):
        for observation in results.observations:
            key = (observation.analyte_key, _unit_key(observation.unit))
            row = rows.get(key)
            if row is None:
                row = Row(key=observation.analyte_key, unit=observation.unit)
                row.cells = [None] * len(found)
                rows[key] = row
            existing = row.cells[index]
            if existing is not None:
                existing.also.append(observation)
                continue
            if not row.label:
                # Newest first: the row is named, and its range set, by the latest report.
                row.label = observation.label
                row.code, row.code_system = observation.code, observation.code_system
                row.reference_range = observation.reference_range
            changed = " ".join(observation.reference_range.split()) != " ".join(
                row.reference_range.split()
            )
            row.cells[index] = Cell(observation, range_changed=changed)
    by_analyte: dict[tuple[str, str], int] = {}
    for row in rows.values():
        by_analyte[row.key] = by_analyte.get(row.key, 0) + 1
    for row in rows.values():
        row.other_units = by_analyte[row.key] > 1
        row.chart = _chart(row, columns)
    ordered = sorted(rows.values(), key=lambda r: (r.label.casefold(), _unit_key(r.unit)))
    return History(columns=columns, rows=ordered)


def _chart(row: Row, columns: list[Column]) -> Chart | None:
    """Oldest to newest, left to right; None with fewer than two numeric values."""
    series = [
        (columns[i].day, cell.observation)
        for i, cell in enumerate(row.cells)
        if cell is not None and cell.observation.numeric is not None
    ]
    series.reverse()
    if len(series) < 2:
        return None
    values = [o.numeric for _day, o in series if o.numeric is not None]
    newest = series[-1][1]
    bounds = [b for b in (newest.low, newest.high) if b is not None]
    low = min([*values, *bounds])
    high = max([*values, *bounds])
    span = (high - low) or Decimal(1)
    first, last = series[0][0], series[-1][0]
    days = max((last - first).days, 1)

    def y(value: Decimal) -> float:
        return round(
            CHART_HEIGHT - _PAD - float((value - low) / span) * (CHART_HEIGHT - 2 * _PAD), 1
        )

    def x(day: date) -> float:
        return round(_PAD + (day - first).days / days * (CHART_WIDTH - 2 * _PAD), 1)

    points = [
        Point(
            f"{x(day):.1f}",
            f"{y(o.numeric):.1f}",
            o.abnormal,
            f"{day.isoformat()}: {o.value} {o.unit}".strip() + (f" ({o.flag})" if o.flag else ""),
        )
        for day, o in series
        if o.numeric is not None
    ]
    band = None
    if newest.low is not None and newest.high is not None:
        band = (f"{y(newest.high):.1f}", f"{y(newest.low) - y(newest.high):.1f}")
    path = "M " + " L ".join(f"{p.x} {p.y}" for p in points)
    summary = "; ".join(p.label for p in points)
    return Chart(points=points, path=path, band=band, summary=summary)
