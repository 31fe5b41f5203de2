"""Reading HPRIM Santé / HPRIM Médecins files, the text format French laboratories send.

Layout, per patient (positions as in the HPRIM Médecins recommendation and as public
importers such as MedShakeEHR's read them):

     1  reference of the report          7  birth date (DD/MM/YYYY, DD/MM/YY, DDMMYYYY)
     2  family name                      8  NIR (often the insured person's, not the patient's)
     3  given name                       9  the laboratory's reference of the request
     4  address, first line             10  date of the report
     5  address, second line            11  sender: 10-character code, then name
     6  postcode (5 characters), town   12  recipient: 10-character code, then name

then free text (the report as printed), then optionally a `****LAB****` line and the
machine-readable results, one per line:

    RES|label|code|type|value|unit|low|high|flag|status|value 2|unit 2|low 2|high 2
    TEX|a line of text, attached to the RES line above it

`****FIN****` closes a patient in a multi-patient file, `****FINFICHIER****` closes the file.

The header is positional, so we never skip or guess a line: a file whose lines are shifted is
refused with the line number, not read with the birth date in the NIR's place. Refusal reasons
name a line and what it should hold, never its content, because they end up in quarantine
notes and logs that must not carry patient data.
"""

from __future__ import annotations

import codecs
import datetime
import re
from decimal import Decimal, InvalidOperation

from vigie.records.identifiers import InvalidIdentifier, validate_nir

from .charset import UndecodableText, decode
from .result import HprimFile, Observation, Party, PatientReport, Value

# Bigger than any real multi-patient batch by far; a bound so a runaway file cannot eat memory.
MAX_BYTES = 16 * 1024 * 1024
HEADER_LINES = 12
_HEADER_NAMES = (
    "reference",
    "family name",
    "given name",
    "address line 1",
    "address line 2",
    "postcode and town",
    "birth date",
    "NIR",
    "laboratory reference",
    "report date",
    "sender",
    "recipient",
)
RES_FIELDS = 14
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MARKER = re.compile(r"^\*{3,}\s*(LAB|FIN|FINFICHIER)\s*\*{3,}$", re.IGNORECASE)
# Tab and form feed (the page breaks of printed reports) are text; other controls mean a
# binary or corrupted file.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0d-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"^[+-]?(?:\d{1,30}(?:[.,]\d{0,30})?|[.,]\d{1,30})$")
_DATE_SEPARATED = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})$")
_DATE_COMPACT = re.compile(r"^(\d{2})(\d{2})(\d{4})$")
_DATE_ISO_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_POSTCODE = re.compile(r"^(\d{5}|\d{2} \d{3}|2[AB]\d{3})(?:\s+|$)(.*)$", re.IGNORECASE)
_EARLIEST_YEAR = 1870


class HprimError(ValueError):
    """A file we do not take; `reason` says what the laboratory should fix."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


def parse(raw: bytes, *, today: datetime.date | None = None) -> HprimFile:
    """Parse an HPRIM file as received, or raise `HprimError`."""
    today = today or datetime.date.today()
    if len(raw) > MAX_BYTES:
        raise HprimError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text, charset = decode(raw)
    except UndecodableText as exc:
        raise HprimError(str(exc)) from exc
    # A DOS end-of-file mark (Ctrl-Z) is still appended by some lab software.
    text = text.rstrip("\x1a")
    if not text.strip():
        raise HprimError("the file is empty")
    lines = _LINE_BREAK.split(text)
    starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]
    warnings: list[str] = []
    blocks = _split_patients(lines, warnings)
    if not blocks:
        raise HprimError("the file holds no patient: only end markers and blank lines")
    patients: list[PatientReport] = []
    to_bytes = _ByteOffsets(raw, text, charset)
    for index, (block, after) in enumerate(blocks, start=1):
        patient = _patient(block, index, today, warnings)
        end = starts[after - 1] if after - 1 < len(starts) else len(text)
        patient.span = (to_bytes(starts[block[0][0] - 1]), to_bytes(end))
        patients.append(patient)
    return HprimFile(charset=charset, patients=patients, warnings=warnings)


class _ByteOffsets:
    """Character offsets in the decoded text to byte offsets in the file as received.

    Every charset we read decodes and encodes back byte for byte, so the bytes of a prefix
    are its encoding; offsets come in increasing order, so each call encodes only the
    stretch since the previous one.
    """

    def __init__(self, raw: bytes, text: str, charset: str) -> None:
        self.text = text
        if charset == "utf-16":
            self.codec = "utf-16-le" if raw.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
            self.base = len(codecs.BOM_UTF16_LE)
        else:
            self.codec = "utf-8" if charset == "utf-8-sig" else charset
            self.base = len(codecs.BOM_UTF8) if charset == "utf-8-sig" else 0
        self.chars = 0
        self.bytes = self.base

    def __call__(self, offset: int) -> int:
        if offset < self.chars:  # pragma: no cover - blocks come in file order
            self.chars, self.bytes = 0, self.base
        self.bytes += len(self.text[self.chars : offset].encode(self.codec))
        self.chars = offset
        return self.bytes


def patient_bytes(raw: bytes, parsed: HprimFile, patient: PatientReport) -> bytes:
    """One patient's part of the file, bytes as received, to store as that patient's document.

    A multi-patient file must never be stored whole under each patient: each document holds
    its own patient's lines only. The byte-order mark, if any, is kept in front so the part
    reads in the same charset on its own.
    """
    start, end = patient.span
    bom = b""
    if parsed.charset == "utf-16":
        bom = raw[: len(codecs.BOM_UTF16_LE)]
    elif parsed.charset == "utf-8-sig":
        bom = codecs.BOM_UTF8
    return bom + raw[start:end]


def _split_patients(
    lines: list[str], warnings: list[str]
) -> list[tuple[list[tuple[int, str]], int]]:
    """The patients' lines, each with the number of the first line after its end marker."""
    blocks: list[tuple[list[tuple[int, str]], int]] = []
    current: list[tuple[int, str]] = []
    closed_by_marker = False
    finished_at: int | None = None
    for number, line in enumerate(lines, start=1):
        if finished_at is not None:
            if line.strip():
                warnings.append(f"lines after ****FINFICHIER**** (line {finished_at}) were ignored")
                break
            continue
        match = _CONTROL.search(line)
        if match:
            raise HprimError(
                f"control character U+{ord(match.group()):04X} in the text: "
                "the file is binary, truncated or in an unexpected charset",
                number,
            )
        marker = _marker(line)
        if marker in ("FIN", "FINFICHIER"):
            if any(text.strip() for _, text in current):
                blocks.append((current, number + 1))
            current = []
            closed_by_marker = True
            if marker == "FINFICHIER":
                finished_at = number
            continue
        current.append((number, line))
        if line.strip():
            closed_by_marker = False
    if any(text.strip() for _, text in current):
        blocks.append((current, len(lines) + 1))
    if blocks and not closed_by_marker and finished_at is None:
        warnings.append(
            "no ****FIN**** or ****FINFICHIER**** after the last patient: "
            "check that the file was not cut short"
        )
    return blocks


def _marker(line: str) -> str | None:
    match = _MARKER.match(line.strip())
    return match.group(1).upper() if match else None


def _patient(
    block: list[tuple[int, str]], index: int, today: datetime.date, warnings: list[str]
) -> PatientReport:
    first = block[0][0]
    where = f"patient {index} (line {first})"
    header = block[:HEADER_LINES]
    for position, (number, line) in enumerate(header):
        stripped = line.strip()
        if _marker(stripped) == "LAB" or stripped[:4].upper() in ("RES|", "TEX|"):
            raise HprimError(
                f"{where}: the header has {position} of its {HEADER_LINES} lines before the "
                f"results; line {position + 1} should be the {_HEADER_NAMES[position]}",
                number,
            )
    if len(header) < HEADER_LINES:
        raise HprimError(
            f"{where}: the header has {len(header)} of its {HEADER_LINES} lines; "
            f"line {len(header) + 1} should be the {_HEADER_NAMES[len(header)]}",
            header[-1][0],
        )
    fields = [line.strip() for _, line in header]
    numbers = [number for number, _ in header]
    if not fields[1]:
        raise HprimError(f"{where}: header line 2 (family name) is empty", numbers[1])
    birth_date = _date(fields[6], today)
    if birth_date is None:
        raise HprimError(f"{where}: header line 7 must be the birth date as DD/MM/YYYY", numbers[6])
    if birth_date > today:
        raise HprimError(f"{where}: the birth date on header line 7 is in the future", numbers[6])
    report_date: datetime.date | None = None
    if fields[9]:
        report_date = _date(fields[9], today)
        if report_date is None:
            raise HprimError(
                f"{where}: header line 10 must be the report date as DD/MM/YYYY", numbers[9]
            )
    else:
        warnings.append(f"{where}: no report date on header line 10")
    postcode, town = _postcode_town(fields[5])
    report = PatientReport(
        first_line=first,
        reference=fields[0],
        family_name=fields[1],
        given_name=fields[2],
        address=[fields[3], fields[4]],
        postcode=postcode,
        town=town,
        birth_date=birth_date,
        nir_line=fields[7],
        nir=_nir(fields[7], f"{where}: header line 8", warnings),
        lab_reference=fields[8],
        date=report_date,
        sender=_party(header[10][1]),
        recipient=_party(header[11][1]),
    )
    _body(block[HEADER_LINES:], report, where, warnings)
    return report


def _body(
    lines: list[tuple[int, str]], report: PatientReport, where: str, warnings: list[str]
) -> None:
    in_lab = False
    warned_res_in_text = False
    for number, line in lines:
        if _marker(line) == "LAB":
            in_lab = True
            continue
        if not in_lab:
            if line.lstrip()[:4].upper() == "RES|" and not warned_res_in_text:
                warned_res_in_text = True
                # Without the marker they are the printed report's lines; reading them as
                # results would be guessing where the lab meant text.
                warnings.append(
                    f"{where}: line {number}: RES| lines before ****LAB**** are kept as text, "
                    "not as results"
                )
            report.text.append(line.rstrip())
            continue
        stripped = line.strip()
        if not stripped:
            continue
        tag, _, rest = stripped.partition("|")
        tag = tag.strip().upper()
        if tag == "RES":
            report.observations.append(_observation(stripped, number, where, warnings))
        elif tag == "TEX":
            target = report.observations[-1].comments if report.observations else report.lab_notes
            target.append(rest.strip())
        else:
            raise HprimError(
                f"{where}: after ****LAB**** every line starts with RES| or TEX|", number
            )
    # The printed report's trailing blank lines carry nothing.
    while report.text and not report.text[-1].strip():
        report.text.pop()


def _observation(line: str, number: int, where: str, warnings: list[str]) -> Observation:
    fields = [field.strip() for field in line.split("|")]
    if len(fields) > RES_FIELDS and any(fields[RES_FIELDS:]):
        warnings.append(f"{where}: line {number}: fields after the 14th were ignored")
    fields += [""] * (RES_FIELDS - len(fields))
    label, code, kind = fields[1], fields[2], fields[3].upper()
    if not label and not code:
        raise HprimError(f"{where}: a RES line has neither a label nor a code", number)
    # Only a numeric result type makes "1" the number one; for a coded or text result it is a
    # code ("1" = positive in some labs).
    numeric = kind in ("N", "")
    return Observation(
        line=number,
        label=label,
        code=code,
        kind=kind,
        value=_value(fields[4], numeric=numeric),
        unit=fields[5],
        low=_value(fields[6], numeric=True),
        high=_value(fields[7], numeric=True),
        flag=fields[8].upper(),
        status=fields[9].upper(),
        second_value=_value(fields[10], numeric=numeric),
        second_unit=fields[11],
        sent=tuple(fields[:RES_FIELDS]),
        second_low=_value(fields[12], numeric=True),
        second_high=_value(fields[13], numeric=True),
    )


def _value(text: str, *, numeric: bool) -> Value:
    if not text:
        return None
    if numeric and _NUMBER.match(text):
        try:
            return Decimal(text.replace(",", "."))
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            return text
    return text


def _date(text: str, today: datetime.date) -> datetime.date | None:
    # The report date may carry a time ("12/03/2026 10:45"); the first word is the date.
    token = text.split()[0] if text.split() else ""
    candidates: list[tuple[int, int, int]] = []
    if match := _DATE_SEPARATED.match(token):
        day, month, year = (int(group) for group in match.groups())
        if len(match.group(3)) == 2:
            year = _century(year, today)
        candidates.append((year, month, day))
    elif match := _DATE_COMPACT.match(token):
        day, month, year = (int(group) for group in match.groups())
        candidates.append((year, month, day))
        if iso := _DATE_ISO_COMPACT.match(token):
            year, month, day = (int(group) for group in iso.groups())
            candidates.append((year, month, day))
    for year, month, day in candidates:
        if not _EARLIEST_YEAR <= year <= today.year + 1:
            continue
        try:
            return datetime.date(year, month, day)
        except ValueError:
            continue
    return None


def _century(two_digits: int, today: datetime.date) -> int:
    # A two-digit year not after this year's is this century's; otherwise the last one's.
    return 2000 + two_digits if two_digits <= today.year % 100 else 1900 + two_digits


def _postcode_town(line: str) -> tuple[str, str]:
    match = _POSTCODE.match(line)
    if match is None:
        return "", line
    return match.group(1).replace(" ", "").upper(), match.group(2).strip()


def _party(line: str) -> Party:
    line = line.rstrip()
    return Party(code=line[:10].strip(), name=line[10:].strip())


def _nir(text: str, where: str, warnings: list[str]) -> str | None:
    if not text:
        return None
    try:
        return validate_nir(text)
    except InvalidIdentifier as exc:
        if len(re.sub(r"[\s.\-]", "", text)) == 13:
            warnings.append(
                f"{where}: the NIR has no key, so it is not used to match "
                "(a one-digit typo would match someone else)"
            )
        else:
            warnings.append(f"{where}: the NIR is not used to match: {exc}")
        return None
