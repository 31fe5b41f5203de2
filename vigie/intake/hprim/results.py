"""One HPRIM patient's results in the channel-free form `records.results` seals beside the
document: the `RES|…` lines as observations, their `TEX|…` lines as comments, the printed
report's free text and the notes before the first result as the set's comments.

Values are shown as the lab wrote them ("11,2", "<0,5", "Positif"); `numeric` is the number
only when the result type is numeric (`N`, or none) and the field is a plain number, so a
coded "1" is never the number one. HPRIM sends the reference range as two fields: the range
shown is "low - high", "< high" or "> low" from the fields as written, and `low`/`high` are
their numbers. Codes are the laboratory's own (HPRIM names no coding system), so their
system is the sender's source system: the same code from another lab is another analyte.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from vigie.records.results import Observation, ResultGroup, ResultSet, ResultsFormatError

from .result import Observation as Res
from .result import PatientReport, Value

# `records.results` keeps one comment to this many characters; a longer printed report is
# cut into several comments, at line ends.
_COMMENT_MAX = 20_000
_HEADER_MAX = 500
_VALUE, _LOW, _HIGH, _SECOND = 4, 6, 7, 10


class UnreadableResults(ValueError):
    """A RES line the results contract refuses (a label of 10,000 characters...)."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


def result_set(report: PatientReport, source_system: str) -> ResultSet:
    """`report`'s results; UnreadableResults naming the line the contract refuses."""
    reported = _midnight(report.date)
    observations = tuple(_observation(res, source_system) for res in report.observations)
    free_text = _text("\n".join(report.text).strip())
    try:
        group = ResultGroup(
            code="",
            label=_header(report.reference),
            observed_at=reported,
            author=_header(report.sender.name or report.sender.code),
            observations=observations,
        )
        return ResultSet(
            source=_header(source_system),
            groups=(group,),
            reference=_header(report.lab_reference),
            reported_at=reported,
            comments=(*_chunks(free_text), *(_text(note) for note in report.lab_notes)),
        )
    except ResultsFormatError as exc:
        raise UnreadableResults(report.first_line, str(exc)) from None


def _observation(res: Res, source_system: str) -> Observation:
    sent = res.sent or ("",) * 14
    try:
        return Observation(
            code=_short(res.code),
            code_system=_short(source_system) if res.code else "",
            label=_short(res.label),
            value=_text(sent[_VALUE]),
            numeric=_number(res.value),
            unit=_short(res.unit),
            reference_range=_range(sent[_LOW], sent[_HIGH]),
            low=_number(res.low),
            high=_number(res.high),
            flag=_short(res.flag)[:16],
            status=_short(res.status),
            comments=tuple(_text(comment) for comment in res.comments),
            value_type=_short(res.kind),
            second_value=_text(sent[_SECOND]),
            second_unit=_short(res.second_unit),
        )
    except ResultsFormatError as exc:
        raise UnreadableResults(res.line, f"the result cannot be kept: {exc}") from None


def _number(value: Value) -> Decimal | None:
    return value if isinstance(value, Decimal) and value.is_finite() else None


def _range(low: str, high: str) -> str:
    if low and high:
        return f"{low} - {high}"
    if high:
        return f"< {high}"
    if low:
        return f"> {low}"
    return ""


def _short(text: str) -> str:
    # Tab and form feed are text in an HPRIM line, not in a label.
    return " ".join(text.replace("\x0c", " ").split()) if text else ""


def _header(text: str) -> str:
    # A header line only names the report: cut rather than refuse a results block for it.
    return _short(text)[:_HEADER_MAX]


def _text(text: str) -> str:
    # A form feed is a printed report's page break: a line break to a reader.
    return text.replace("\x0c", "\n")


def _chunks(text: str) -> list[str]:
    if not text:
        return []
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > _COMMENT_MAX:
            chunks.append(line[:_COMMENT_MAX])
            line = line[_COMMENT_MAX:]
        if current and len(current) + 1 + len(line) > _COMMENT_MAX:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def _midnight(day: datetime.date | None) -> datetime.datetime | None:
    # HPRIM dates the report, not the sample, and to the day only.
    return None if day is None else datetime.datetime(day.year, day.month, day.day)
