"""Lab results as data: what a lab message says, value by value, in one channel-free form.

Every channel that carries results (HL7 v2 ORU^R01, HPRIM Santé) turns its message into a
`ResultSet`; `records.ingest(..., results=...)` seals it beside the message, which stays the
document's content exactly as received. The portal reads it back (through the one door) to
show a table, a PDF and the patient's history of each analyte.

Nothing here imports a channel: the intake adapters depend on this contract, never the
other way round. The JSON form (`to_json` / `from_json`) is canonical (sorted keys, every
field present, no whitespace, UTF-8) so equal result sets seal to equal plaintext, and strict
on load: an unknown or missing key, a wrong type, a number that is not one or another schema
version is a `ResultsFormatError`, never a half-read set.

Numbers are `Decimal`, written in JSON as strings: "5.10" stays "5.10" (a lab's precision
is part of the result), and no binary float ever rounds a potassium.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "ABNORMAL_FLAGS",
    "LOINC",
    "SCHEMA",
    "Attachment",
    "Observation",
    "ResultGroup",
    "ResultSet",
    "ResultsFormatError",
    "is_abnormal",
    "parse_number",
    "parse_range",
]

SCHEMA = "vigie.lab-results/1"
# HL7 table 0396's name for LOINC; every other coding system is the lab's own.
LOINC = "LN"
# Flags (HL7 table 0078, HPRIM's) that say "outside the reference range" or "abnormal".
ABNORMAL_FLAGS = frozenset(
    {"L", "H", "LL", "HH", "<", ">", "A", "AA", "HU", "LU", "U", "D", "POS", "R", "I"}
)
# Texts as long as the longest comment a lab sends, short enough to refuse junk.
_MAX_TEXT = 20_000
_MAX_SHORT = 500
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What a one-line field may not hold: a control character or a line break (a tab it may).
_LINE_BAD_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_FLAG = 16
_NUMBER_RE = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)")
_RANGE_RE = re.compile(
    r"^\s*[\[(]?\s*(?P<low>[+-]?\d+(?:[.,]\d+)?)\s*(?:-|–|à|a|to|;|/)\s*"
    r"(?P<high>[+-]?\d+(?:[.,]\d+)?)\s*[\])]?\s*$",
    re.IGNORECASE,
)
_BOUND_RE = re.compile(r"^\s*(?P<op><=?|>=?|≤|≥|inf\.?|sup\.?)\s*(?P<n>\d+(?:[.,]\d+)?)\s*$", re.I)


class ResultsFormatError(ValueError):
    """A result set that is not one (wrong JSON, wrong field, wrong type): refused whole."""


def parse_number(text: str) -> Decimal | None:
    """The number `text` is, when it is nothing else ("5.2", "5,2", " 12 "), else None.

    "<0.5", "1/128", "positif" are not numbers: they stay text, shown as sent.
    """
    candidate = (text or "").strip()
    if not _NUMBER_RE.fullmatch(candidate):
        return None
    try:
        number = Decimal(candidate.replace(",", "."))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def parse_range(text: str) -> tuple[Decimal | None, Decimal | None]:
    """(low, high) of a reference range as labs write it: "3.5-5.0", "[3,5 ; 5,0]", "<5",
    ">= 60", "3.5 à 5"; (None, None) for anything else (it is still shown as sent)."""
    candidate = (text or "").strip()
    match = _RANGE_RE.match(candidate)
    if match:
        return parse_number(match["low"]), parse_number(match["high"])
    bound = _BOUND_RE.match(candidate)
    if bound:
        number = parse_number(bound["n"])
        op = bound["op"].lower()
        if op.startswith(("<", "≤", "inf")):
            return None, number
        return number, None
    return None, None


def is_abnormal(flag: str) -> bool:
    return any(part in ABNORMAL_FLAGS for part in flag.upper().split())


# The "panic" flags of HL7 table 0078: critically low, high, abnormal.
CRITICAL_FLAGS = frozenset({"LL", "HH", "AA"})


def highest_flag(results: ResultSet) -> Literal["critical", "abnormal", ""]:
    """The result set's worst flag, as the inbox marks it: "critical" if any value is
    critically out of range, "abnormal" if any is otherwise flagged, "" if none is."""
    worst: Literal["critical", "abnormal", ""] = ""
    for observation in results.observations:
        parts = set(observation.flag.upper().split())
        if parts & CRITICAL_FLAGS:
            return "critical"
        if parts & ABNORMAL_FLAGS:
            worst = "abnormal"
    return worst


def _clean(value: str, what: str, limit: int = _MAX_SHORT, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise ResultsFormatError(f"{what} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ResultsFormatError(f"{what} is longer than {limit} characters")
    match = _CONTROL_RE.search(value)
    if match or (not multiline and ("\n" in value or "\r" in value)):
        raise ResultsFormatError(f"{what} contains a control character")
    return value


@dataclass(frozen=True)
class Observation:
    """One analyte's result, as the lab sent it, with its numbers when it has some.

    `value`, `unit` and `reference_range` are the lab's text, shown as sent; `numeric`,
    `low` and `high` are what can be compared and drawn (None when the text is not a plain
    number). `code_system` is "LN" for a LOINC code, else the lab's own system as it named
    it ("" when it named none): a local code means something only with its lab.
    """

    code: str
    code_system: str
    label: str
    value: str
    numeric: Decimal | None = None
    unit: str = ""
    reference_range: str = ""
    low: Decimal | None = None
    high: Decimal | None = None
    flag: str = ""
    status: str = ""
    observed_at: datetime | None = None
    comments: tuple[str, ...] = ()
    # The sender's value type (HL7 OBX-2: NM, ST, TX, CE, SN…; HPRIM: N, A, T…).
    value_type: str = ""
    # A second expression of the same result some labs add (HPRIM: another unit).
    second_value: str = ""
    second_unit: str = ""

    def __post_init__(self) -> None:
        if not self._plainly_valid():
            self._check_each_field()
        if not (self.code.strip() or self.label.strip()):
            raise ResultsFormatError("an observation needs a code or a label")
        for name in ("numeric", "low", "high"):
            number = getattr(self, name)
            if number is not None and (not isinstance(number, Decimal) or not number.is_finite()):
                raise ResultsFormatError(f"observation {name} must be a finite Decimal")

    def _plainly_valid(self) -> bool:
        """Every text field within its limits and free of what it may not hold, checked in
        two searches (the one-line fields joined by a tab, which they may hold; the free
        texts by a line break) instead of one per field: a lab result carries a dozen fields
        and every message several results. False sends the observation through
        `_check_each_field`, which says which field is wrong."""
        lines = (
            self.code,
            self.code_system,
            self.unit,
            self.reference_range,
            self.status,
            self.value_type,
            self.label,
            self.second_unit,
        )
        texts = (self.value, self.second_value, *self.comments)
        try:
            return (
                len(self.flag) <= _MAX_FLAG
                and max(map(len, lines)) <= _MAX_SHORT
                and max(map(len, texts)) <= _MAX_TEXT
                and _LINE_BAD_RE.search("\t".join((*lines, self.flag))) is None
                and _CONTROL_RE.search("\n".join(texts)) is None
            )
        except TypeError:  # a field that is not text: the field-by-field check names it
            return False

    def _check_each_field(self) -> None:
        for name in ("code", "code_system", "unit", "reference_range", "status", "value_type"):
            _clean(getattr(self, name), f"observation {name}")
        _clean(self.label, "observation label")
        _clean(self.value, "observation value", _MAX_TEXT, multiline=True)
        _clean(self.second_value, "observation second value", _MAX_TEXT, multiline=True)
        _clean(self.second_unit, "observation second unit")
        _clean(self.flag, "observation flag", _MAX_FLAG)
        for comment in self.comments:
            _clean(comment, "observation comment", _MAX_TEXT, multiline=True)

    @classmethod
    def from_text(cls, **values: Any) -> Observation:
        """An observation whose numbers are read from its text: `numeric` from `value`,
        `low`/`high` from `reference_range`, unless given. The channels' one constructor."""
        if "numeric" not in values:
            values["numeric"] = parse_number(values.get("value", ""))
        if "low" not in values and "high" not in values:
            values["low"], values["high"] = parse_range(values.get("reference_range", ""))
        values["flag"] = values.get("flag", "").strip().upper()
        values["comments"] = tuple(values.get("comments", ()))
        return cls(**values)

    @property
    def abnormal(self) -> bool:
        return is_abnormal(self.flag)

    @property
    def analyte_key(self) -> tuple[str, str]:
        """What makes two observations the same analyte across reports: the code in its
        system when there is one, else the label (folded)."""
        if self.code.strip():
            return (self.code_system.strip().upper(), self.code.strip().upper())
        return ("", " ".join(self.label.split()).casefold())


@dataclass(frozen=True)
class ResultGroup:
    """One order or battery (an HL7 OBR; an HPRIM file has one): its observations in order."""

    code: str
    label: str
    observed_at: datetime | None = None
    author: str = ""
    observations: tuple[Observation, ...] = ()
    comments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("code", "label", "author"):
            _clean(getattr(self, name), f"group {name}")
        for comment in self.comments:
            _clean(comment, "group comment", _MAX_TEXT, multiline=True)
        if not all(isinstance(o, Observation) for o in self.observations):
            raise ResultsFormatError("a group holds observations only")


@dataclass(frozen=True)
class Attachment:
    """The sender's own document carried in the message (HL7 OBX type ED): what it is.

    Its bytes are sealed beside the result set (see `records.results_store`), never inside
    the JSON; size and SHA-256 bind the two.
    """

    content_type: str
    size: int
    sha256: str

    @classmethod
    def of(cls, content_type: str, data: bytes) -> Attachment:
        return cls(content_type, len(data), hashlib.sha256(data).hexdigest())

    def __post_init__(self) -> None:
        _clean(self.content_type, "attachment content type", 100)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ResultsFormatError("attachment size must be a non-negative integer")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256 or ""):
            raise ResultsFormatError("attachment sha256 must be 64 lowercase hex digits")

    def matches(self, data: bytes) -> bool:
        return len(data) == self.size and hashlib.sha256(data).hexdigest() == self.sha256


@dataclass(frozen=True)
class ResultSet:
    """A lab message's results: who sent them, when, the groups, the free text."""

    source: str
    groups: tuple[ResultGroup, ...]
    # The lab's own reference for this report (HL7 OBR-3 filler number, HPRIM's lab ref).
    reference: str = ""
    requested_at: datetime | None = None
    reported_at: datetime | None = None
    comments: tuple[str, ...] = ()
    attachment: Attachment | None = None

    def __post_init__(self) -> None:
        _clean(self.source, "result set source")
        _clean(self.reference, "result set reference")
        for comment in self.comments:
            _clean(comment, "result set comment", _MAX_TEXT, multiline=True)
        if not all(isinstance(g, ResultGroup) for g in self.groups):
            raise ResultsFormatError("a result set holds groups only")
        if self.attachment is not None and not isinstance(self.attachment, Attachment):
            raise ResultsFormatError("attachment must be an Attachment")

    @property
    def observations(self) -> list[Observation]:
        return [o for group in self.groups for o in group.observations]

    def observed_at(self, observation: Observation, group: ResultGroup) -> datetime | None:
        return observation.observed_at or group.observed_at

    @property
    def clinical_date(self) -> date | None:
        dates = [g.observed_at for g in self.groups if g.observed_at is not None]
        dates += [o.observed_at for o in self.observations if o.observed_at is not None]
        return min(dates).date() if dates else None

    def to_json(self) -> bytes:
        return canonical(_set_to_dict(self))

    @classmethod
    def from_json(cls, data: bytes) -> ResultSet:
        try:
            loaded = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_int=_no_int)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsFormatError(f"not a result set: {exc}") from None
        return _set_from_dict(loaded)

    def with_attachment(self, attachment: Attachment | None) -> ResultSet:
        return replace(self, attachment=attachment)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _no_float(text: str) -> Any:
    raise ResultsFormatError(f"numbers are written as strings here, found {text[:20]}")


def _no_int(text: str) -> int:
    return int(text)


# --- to and from plain dicts: every field, in every object, always present -----------------


def _number_out(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _number_in(value: Any, what: str) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ResultsFormatError(f"{what} must be a string or null")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ResultsFormatError(f"{what} {value[:20]!r} is not a number") from None
    if not number.is_finite():
        raise ResultsFormatError(f"{what} must be finite")
    return number


def _when_out(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when_in(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ResultsFormatError(f"{what} must be a string or null")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ResultsFormatError(f"{what} {value[:30]!r} is not an ISO date-time") from None


def _texts_in(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResultsFormatError(f"{what} must be a list of strings")
    return tuple(value)


def _keys(value: Any, expected: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ResultsFormatError(f"{what} must be an object")
    if set(value) != expected:
        missing, unknown = expected - set(value), set(value) - expected
        raise ResultsFormatError(
            f"{what}: missing {sorted(missing)}, unknown {sorted(unknown)}"[:300]
        )
    return value


_OBS_NUMBERS = ("numeric", "low", "high")
_OBS_TEXTS = tuple(
    f.name for f in fields(Observation) if f.name not in (*_OBS_NUMBERS, "observed_at", "comments")
)


def _obs_to_dict(observation: Observation) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(observation, name) for name in _OBS_TEXTS}
    out.update({name: _number_out(getattr(observation, name)) for name in _OBS_NUMBERS})
    out["observed_at"] = _when_out(observation.observed_at)
    out["comments"] = list(observation.comments)
    return out


def _obs_from_dict(value: Any) -> Observation:
    data = _keys(value, {f.name for f in fields(Observation)}, "observation")
    for name in _OBS_TEXTS:
        if not isinstance(data[name], str):
            raise ResultsFormatError(f"observation {name} must be a string")
    values: dict[str, Any] = {name: data[name] for name in _OBS_TEXTS}
    values.update({name: _number_in(data[name], f"observation {name}") for name in _OBS_NUMBERS})
    values["observed_at"] = _when_in(data["observed_at"], "observation observed_at")
    values["comments"] = _texts_in(data["comments"], "observation comments")
    return Observation(**values)


def _group_to_dict(group: ResultGroup) -> dict[str, Any]:
    return {
        "code": group.code,
        "label": group.label,
        "observed_at": _when_out(group.observed_at),
        "author": group.author,
        "observations": [_obs_to_dict(o) for o in group.observations],
        "comments": list(group.comments),
    }


def _group_from_dict(value: Any) -> ResultGroup:
    data = _keys(value, {f.name for f in fields(ResultGroup)}, "group")
    observations = data["observations"]
    if not isinstance(observations, list):
        raise ResultsFormatError("group observations must be a list")
    for name in ("code", "label", "author"):
        if not isinstance(data[name], str):
            raise ResultsFormatError(f"group {name} must be a string")
    return ResultGroup(
        code=data["code"],
        label=data["label"],
        observed_at=_when_in(data["observed_at"], "group observed_at"),
        author=data["author"],
        observations=tuple(_obs_from_dict(o) for o in observations),
        comments=_texts_in(data["comments"], "group comments"),
    )


def _set_to_dict(results: ResultSet) -> dict[str, Any]:
    attachment = results.attachment
    return {
        "schema": SCHEMA,
        "source": results.source,
        "reference": results.reference,
        "requested_at": _when_out(results.requested_at),
        "reported_at": _when_out(results.reported_at),
        "comments": list(results.comments),
        "groups": [_group_to_dict(g) for g in results.groups],
        "attachment": None
        if attachment is None
        else {
            "content_type": attachment.content_type,
            "size": attachment.size,
            "sha256": attachment.sha256,
        },
    }


def _set_from_dict(value: Any) -> ResultSet:
    expected = {f.name for f in fields(ResultSet)} | {"schema"}
    data = _keys(value, expected, "result set")
    if data["schema"] != SCHEMA:
        raise ResultsFormatError(f"unknown result set schema {str(data['schema'])[:40]!r}")
    if not isinstance(data["groups"], list):
        raise ResultsFormatError("result set groups must be a list")
    for name in ("source", "reference"):
        if not isinstance(data[name], str):
            raise ResultsFormatError(f"result set {name} must be a string")
    attachment = None
    if data["attachment"] is not None:
        raw = _keys(data["attachment"], {"content_type", "size", "sha256"}, "attachment")
        attachment = Attachment(raw["content_type"], raw["size"], raw["sha256"])
    return ResultSet(
        source=data["source"],
        groups=tuple(_group_from_dict(g) for g in data["groups"]),
        reference=data["reference"],
        requested_at=_when_in(data["requested_at"], "requested_at"),
        reported_at=_when_in(data["reported_at"], "reported_at"),
        comments=_texts_in(data["comments"], "result set comments"),
        attachment=attachment,
    )
