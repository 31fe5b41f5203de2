"""What an HPRIM file says, as typed values: patients, their header, their observations.

The parse is pure data (no models, no database) so the matcher, the renderer and the tests can
all take it as it is; `as_dict()` gives the JSON form the corpus stores beside each file.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# A value as the lab sent it: a number when it reads as one, the text otherwise ("<0,5",
# "négatif", "non fait"), None when the field is empty.
Value = Decimal | str | None


def value_dict(value: Value) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return {"number": str(value)}
    return {"text": value}


@dataclass
class Observation:
    """One `RES|…` line and the `TEX|…` lines that follow it."""

    line: int
    label: str
    code: str
    kind: str  # the lab's result type: N numeric, A alphanumeric, C coded, T text...
    value: Value
    unit: str
    low: Value
    high: Value
    flag: str  # L, H, LL, HH, N, A... as sent, upper-cased; "" when none
    status: str  # F final, P partial, C corrected... as sent; "" when none
    second_value: Value = None
    second_unit: str = ""
    second_low: Value = None
    second_high: Value = None
    comments: list[str] = field(default_factory=list)
    # The RES line's fields as written ("RES", label, code... "11,2" before it was the number
    # 11.2): what a physician is shown. Not in `as_dict()`, which is the typed reading.
    sent: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "label": self.label,
            "code": self.code,
            "kind": self.kind,
            "value": value_dict(self.value),
            "unit": self.unit,
            "low": value_dict(self.low),
            "high": value_dict(self.high),
            "flag": self.flag,
            "status": self.status,
            "second_value": value_dict(self.second_value),
            "second_unit": self.second_unit,
            "second_low": value_dict(self.second_low),
            "second_high": value_dict(self.second_high),
            "comments": list(self.comments),
        }


@dataclass
class Party:
    """Line 11 (sender) or 12 (recipient): a 10-character code, then a name."""

    code: str
    name: str


@dataclass
class PatientReport:
    """One patient's part of the file: the 12 header lines, the text, the results."""

    first_line: int
    reference: str
    family_name: str
    given_name: str
    address: list[str]
    postcode: str
    town: str
    birth_date: datetime.date
    # The NIR line exactly as written, and the NIR itself only when its key checks out. It is
    # often the insured person's (a parent's), so it is a clue for the matcher, not an identity.
    nir_line: str
    nir: str | None
    lab_reference: str
    date: datetime.date | None
    sender: Party
    recipient: Party
    text: list[str] = field(default_factory=list)
    lab_notes: list[str] = field(default_factory=list)  # TEX lines before the first RES
    observations: list[Observation] = field(default_factory=list)
    # Where this patient's lines (header to end marker) sit in the file, in bytes: the part
    # stored as this patient's document (see `patient_bytes`).
    span: tuple[int, int] = (0, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_line": self.first_line,
            "bytes": list(self.span),
            "reference": self.reference,
            "family_name": self.family_name,
            "given_name": self.given_name,
            "address": list(self.address),
            "postcode": self.postcode,
            "town": self.town,
            "birth_date": self.birth_date.isoformat(),
            "nir_line": self.nir_line,
            "nir": self.nir,
            "lab_reference": self.lab_reference,
            "date": self.date.isoformat() if self.date else None,
            "sender": {"code": self.sender.code, "name": self.sender.name},
            "recipient": {"code": self.recipient.code, "name": self.recipient.name},
            "text": list(self.text),
            "lab_notes": list(self.lab_notes),
            "observations": [observation.as_dict() for observation in self.observations],
        }


@dataclass
class HprimFile:
    charset: str
    patients: list[PatientReport]
    # Oddities we read through (a missing end marker, an NIR with a bad key): kept so a
    # reconciliation clerk sees them beside the document.
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "charset": self.charset,
            "patients": [patient.as_dict() for patient in self.patients],
            "warnings": list(self.warnings),
        }
