"""Reading the content of an HL7 v2 ORU^R01 message that `parser.parse` has split.

`read_oru(message)`: PID (who), OBR (which order, when, by whom), OBX (the results, or the
sender's own PDF in an ED value). Problems here are errors (AE): the envelope was fine, the
content is not, and the `HL7Error` says which segment and field.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from vigie.intake.hl7.parser import ErrorCode, HL7Error, Message, Segment, unescape
from vigie.records.receive import Sender

# France's INS-NIR (ANS, "Référentiel INS"): the OID in PID-3's assigning authority.
INS_NIR_OID = "1.2.250.1.213.1.4.8"
# Identifier type codes (HL7 table 0203) that mean "this system's patient number".
_IPP_TYPES = frozenset({"", "PI", "PT", "MR"})
_ED_SUBTYPES = {"PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg",
                "PNG": "image/png"}  # fmt: skip
VALUE_TYPES = frozenset({"NM", "ST", "TX", "FT", "SN", "CE", "CWE", "CNE", "ED", "DT", "TS"})
_TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?")


def _error(
    code: ErrorCode, text: str, segment: str = "", sequence: int = 1, position: int = 0
) -> HL7Error:
    return HL7Error("AE", code, text, segment=segment, sequence=sequence, position=position)


@dataclass(frozen=True)
class Observation:
    value_type: str
    code: str
    name: str
    value: str
    units: str = ""
    reference_range: str = ""
    flags: str = ""
    status: str = ""
    # OBX-3.3: "LN" for LOINC, else the lab's own coding system.
    code_system: str = ""
    # OBX-14, when the sender dates each result apart from its order's OBR-7.
    observed_at: datetime | None = None
    # NTE segments that follow this OBX.
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Order:
    code: str
    name: str
    observed_at: datetime | None
    author: str
    observations: list[Observation] = field(default_factory=list)
    # OBR-3, the filler (lab) order number; NTE segments before its first OBX.
    filler_number: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.name or self.code


@dataclass(frozen=True)
class Attachment:
    content_type: str
    data: bytes


@dataclass(frozen=True)
class LabResult:
    """One ORU^R01: one patient, one or more orders, perhaps the sender's own document."""

    patient: Sender
    orders: list[Order]
    attachment: Attachment | None
    source_name: str
    # The patient's IPP as the sender gave it (for the rendered report's header).
    ipp_text: str = ""
    # NTE segments before the first OBR (notes on the patient or the whole report).
    comments: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        titles = list(dict.fromkeys(o.title for o in self.orders if o.title))
        return ", ".join(titles)[:255]

    @property
    def clinical_date(self) -> date | None:
        dates = [o.observed_at for o in self.orders if o.observed_at is not None]
        return min(dates).date() if dates else None

    @property
    def author(self) -> str:
        return next((o.author for o in self.orders if o.author), "")[:255]


def parse_timestamp(text: str, where: str, segment: str, position: int) -> datetime | None:
    """HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS]]]]][.S][+/-ZZZZ]), local time of the sender."""
    text = text.strip()
    if not text:
        return None
    match = _TS_RE.match(text)
    try:
        if match is None or match.group(3) is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = (int(g or 0) for g in match.groups())
        return datetime(year, month, day, hour, minute, second)
    except (ValueError, TypeError):
        raise _error(
            ErrorCode.DATA_TYPE,
            f"{where} {text[:40]!r} is not a date: expected YYYYMMDD[HHMM[SS]]",
            segment,
            position=position,
        ) from None


def _person(segment: Segment, number: int, *, subcomponents: bool = False) -> str:
    """An XCN (OBR-16) or an NDL's CNN (OBR-32, in subcomponents), as "Dr Jeanne MARTIN"."""
    if subcomponents:
        parts = [segment.value(number, 1, s) for s in range(1, 7)]
        family, given, prefix = parts[1], parts[2], parts[5]
    else:
        family = segment.value(number, 2)
        given = segment.value(number, 3)
        prefix = segment.value(number, 6)
        # Some senders put the surname's own components (FN) in subcomponents.
        family = family or segment.value(number, 2, 1)
    name = " ".join(p for p in (prefix, given, family.upper()) if p.strip())
    if not name:
        name = segment.value(number, 1, 1)
    return name.strip()


def _patient(pid: Segment, message: Message) -> tuple[Sender, str]:
    ins = ""
    ipp = ""
    ipp_source = ""
    for rep in pid.repetitions(3):
        value = unescape(_at(rep, 0, 0), message.separators).strip()
        if not value:
            continue
        authority = [unescape(_at(rep, 3, s), message.separators).strip() for s in range(3)]
        kind = unescape(_at(rep, 4, 0), message.separators).strip().upper()
        if INS_NIR_OID in authority:
            ins = ins or value
        elif kind in _IPP_TYPES and not ipp:
            ipp = value
            # The namespace id names the assigning system; its OID when that is all there is.
            # Unqualified (a lab's own IPP usually is), it stays empty: the handler places it
            # in the authenticated sender's own system, never in what MSH-4 claims.
            ipp_source = authority[0] or authority[1]
    birth = parse_timestamp(pid.value(7), "PID-7 (birth date)", "PID", 7)
    sex = pid.value(8).strip().upper()
    sender = Sender(
        ins=ins or None,
        ipp=ipp or None,
        ipp_source=ipp_source[:100],
        family_name=pid.value(5, 1, 1).strip()[:150],
        given_names=" ".join(p for p in (pid.value(5, 2), pid.value(5, 3)) if p.strip())[:150],
        birth_date=birth.date() if birth else None,
        sex=sex if sex in ("F", "M") else ("U" if sex else ""),
    )
    return sender, ipp


def _at(rep: list[list[str]], component: int, sub: int) -> str:
    try:
        return rep[component][sub]
    except IndexError:
        return ""


def _observation(obx: Segment, sequence: int) -> Observation | Attachment:
    value_type = obx.value(2).strip().upper()
    if value_type == "ED":
        return _attachment(obx, sequence)
    if value_type and value_type not in VALUE_TYPES:
        raise _error(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"OBX-2 (value type) {value_type!r} is not supported: use NM, ST, TX, FT, SN, CE, "
            "CWE or ED",
            "OBX",
            sequence,
            2,
        )
    values = []
    for rep in obx.repetitions(5):
        text = _value_text(value_type, [[unescape(s, obx.separators) for s in c] for c in rep])
        if text:
            values.append(text)
    flags = [obx.value(8, rep=r) for r in range(len(obx.repetitions(8)))]
    try:
        observed = parse_timestamp(obx.value(14), "OBX-14 (observation date)", "OBX", 14)
    except HL7Error:
        # OBR-7 is the clinical date and is required; an odd OBX-14 only loses precision,
        # and refusing messages this reader used to take would strand a lab's results.
        observed = None
    return Observation(
        value_type=value_type,
        code=obx.value(3, 1),
        name=obx.value(3, 2) or obx.value(3, 1),
        value="\n".join(values),
        units=obx.value(6, 2) or obx.value(6, 1),
        reference_range=obx.value(7),
        flags=" ".join(f.strip() for f in flags if f.strip()),
        status=obx.value(11).strip(),
        code_system=obx.value(3, 3).strip(),
        observed_at=observed,
    )


def _value_text(value_type: str, components: list[list[str]]) -> str:
    parts = [c[0] if c else "" for c in components]
    if value_type == "SN":
        # Structured numeric: comparator ^ number ^ separator/suffix ^ number, e.g. "<^0.5",
        # "^1^:^128" (a titre), "^2^-^5" (a range).
        parts += [""] * 4
        return f"{parts[0]}{parts[1]}{parts[2]}{parts[3]}".strip()
    if value_type in ("CE", "CWE", "CNE"):
        return (parts[1] if len(parts) > 1 and parts[1] else parts[0]).strip()
    # ST/TX/FT/NM and the rest: a component separator inside free text is the sender's
    # content, put back as written.
    return "^".join(parts).rstrip("^").strip() if len(parts) > 1 else parts[0].strip()


def _attachment(obx: Segment, sequence: int) -> Attachment:
    subtype = obx.value(5, 3).strip().upper()
    encoding = obx.value(5, 4).strip().upper()
    # Base64 uses none of the separators, but some senders split it with formatting escapes.
    data = re.sub(r"\s+", "", obx.value(5, 5))
    content_type = _ED_SUBTYPES.get(subtype)
    if content_type is None:
        raise _error(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"OBX-5.3 (ED data subtype) {subtype!r} is not accepted: send PDF (or JPEG, PNG)",
            "OBX",
            sequence,
            5,
        )
    if encoding != "BASE64":
        raise _error(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"OBX-5.4 (ED encoding) {encoding!r} is not accepted: encode the document in Base64",
            "OBX",
            sequence,
            5,
        )
    if not data:
        raise _error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "OBX-5.5 (ED data) is empty: the embedded document is missing",
            "OBX",
            sequence,
            5,
        )
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _error(
            ErrorCode.DATA_TYPE,
            f"OBX-5.5 (ED data) is not valid Base64 ({len(data)} characters): the document "
            "was probably truncated; send the message again",
            "OBX",
            sequence,
            5,
        ) from None
    return Attachment(content_type, decoded)


def read_oru(message: Message) -> LabResult:
    """The patient, orders and results of an ORU^R01, or an `HL7Error` (AE) saying why not."""
    pids = [s for s in message.segments if s.name == "PID"]
    if not pids:
        raise _error(
            ErrorCode.SEGMENT_SEQUENCE,
            "no PID segment: an ORU^R01 must say which patient the results are for",
            "PID",
        )
    if len(pids) > 1:
        raise _error(
            ErrorCode.SEGMENT_SEQUENCE,
            "more than one PID: send one message per patient",
            "PID",
            2,
        )
    sender, ipp_text = _patient(pids[0], message)
    report_notes: list[str] = []
    orders: list[Order] = []
    observations: list[Observation] = []
    attachments: list[Attachment] = []
    obr_count = obx_count = 0
    # Where an NTE's comment goes: the last OBX, else the last OBR, else the report.
    notes = report_notes
    for segment in message.segments[1:]:
        if segment.name == "NTE":
            text = "\n".join(
                segment.value(3, rep=r) for r in range(len(segment.repetitions(3)))
            ).strip()
            if text:
                notes.append(text[:20_000])
        elif segment.name == "OBR":
            obr_count += 1
            observations = []
            orders.append(_order(segment, obr_count, observations))
            notes = orders[-1].comments
        elif segment.name == "OBX":
            obx_count += 1
            if not orders:
                raise _error(
                    ErrorCode.SEGMENT_SEQUENCE,
                    "OBX before any OBR: results must follow the order (OBR) they belong to",
                    "OBX",
                    obx_count,
                )
            item = _observation(segment, obx_count)
            if isinstance(item, Attachment):
                attachments.append(item)
            else:
                observations.append(item)
                notes = item.comments
    if not orders:
        raise _error(ErrorCode.SEGMENT_SEQUENCE, "no OBR segment: an ORU^R01 needs an order", "OBR")
    if len(attachments) > 1:
        raise _error(
            ErrorCode.SEGMENT_SEQUENCE,
            f"{len(attachments)} embedded documents (OBX type ED): send one message per "
            "document so that none is lost",
            "OBX",
        )
    if not attachments and not any(o.observations for o in orders):
        raise _error(
            ErrorCode.SEGMENT_SEQUENCE,
            "no OBX segment: the message carries no result to store",
            "OBX",
        )
    facility = message.sending_facility or message.sending_application
    return LabResult(
        patient=sender,
        orders=orders,
        attachment=attachments[0] if attachments else None,
        source_name=facility[:100],
        ipp_text=ipp_text,
        comments=report_notes,
    )


def _order(obr: Segment, sequence: int, observations: list[Observation]) -> Order:
    code = obr.value(4, 1).strip()
    name = obr.value(4, 2).strip()
    if not code and not name:
        raise _error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "OBR-4 (universal service identifier) missing: it names the examination",
            "OBR",
            sequence,
            4,
        )
    observed = parse_timestamp(obr.value(7), "OBR-7 (observation date)", "OBR", 7)
    if observed is None:
        raise _error(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "OBR-7 (observation date/time) missing: it is the clinical date of the results",
            "OBR",
            sequence,
            7,
        )
    author = _person(obr, 32, subcomponents=True) or _person(obr, 16)
    return Order(
        code=code,
        name=name,
        observed_at=observed,
        author=author,
        observations=observations,
        filler_number=(obr.value(3, 1) or obr.value(2, 1)).strip()[:200],
    )
