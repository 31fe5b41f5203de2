"""What each synthetic document holds, decided when the clinic is built: `pdf/` only lays
it out (see `people.py` for why everything is decided up front).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from vigie.synthetic.people import Medication, Practitioner, fr_number


@dataclass(frozen=True)
class Section:
    """A titled block of prose (or of list items) in a letter, report or summary."""

    heading: str
    paragraphs: tuple[str, ...]
    as_list: bool = False


@dataclass(frozen=True)
class LabRow:
    label: str
    value: float
    unit: str
    low: float | None
    high: float | None
    decimals: int
    percent: float | None = None  # share of leucocytes, for the differential count

    @property
    def flag(self) -> str:
        """ "H" above the range, "L" below it, "" inside: what the lab prints in bold."""
        if self.high is not None and round(self.value, self.decimals) > self.high:
            return "H"
        if self.low is not None and round(self.value, self.decimals) < self.low:
            return "L"
        return ""

    @property
    def value_text(self) -> str:
        return fr_number(self.value, self.decimals)

    @property
    def range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{fr_number(self.low, self.decimals)} - {fr_number(self.high, self.decimals)}"
        if self.high is not None:
            return f"< {fr_number(self.high, self.decimals)}"
        if self.low is not None:
            return f"> {fr_number(self.low, self.decimals)}"
        return ""


@dataclass(frozen=True)
class LabSection:
    title: str
    rows: tuple[LabRow, ...]


@dataclass(frozen=True)
class LabReport:
    title: str
    request_number: str
    prescriber: Practitioner
    biologist: Practitioner
    sampled_at: datetime
    validated_at: datetime
    sections: tuple[LabSection, ...]
    comment: str | None


@dataclass(frozen=True)
class ImagingReport:
    title: str
    modality: str
    accession: str
    prescriber: Practitioner
    radiologist: Practitioner
    sections: tuple[Section, ...]  # indication, technique, résultats
    conclusion: tuple[str, ...]


@dataclass(frozen=True)
class Letter:
    """Consultation letter or discharge summary: a practitioner writing to a colleague."""

    title: str
    author: Practitioner
    recipient: Practitioner
    subject_line: str
    opening: str
    sections: tuple[Section, ...]
    closing: str
    service: str | None = None  # set for a hospital discharge summary
    admitted: date | None = None


@dataclass(frozen=True)
class Prescription:
    title: str
    prescriber: Practitioner
    ald_items: tuple[Medication, ...]  # upper half of a bizone form when non-empty
    items: tuple[Medication, ...]
    renewals: int
    weight_kg: int | None  # printed for children: doses are per kilogram


@dataclass(frozen=True)
class Certificate:
    title: str
    author: Practitioner
    paragraphs: tuple[str, ...]


Payload = LabReport | ImagingReport | Letter | Prescription | Certificate
