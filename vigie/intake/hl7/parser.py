"""Reading HL7 v2 ORU^R01 messages (v2.3 to v2.5.1) into what `receive()` needs.

Two steps, each refusing with an `HL7Error` that carries the ACK code, the HL7 table 0357
error code and a sentence an integrator can act on:

* `parse(raw)`: the envelope. Separators come from MSH-1/MSH-2, the character set from
  MSH-18 (the bytes are decoded with it, strictly), then MSH-9 (type), MSH-10 (control id),
  MSH-12 (version) are checked. Problems here are rejections (AR): resending the same bytes
  can never work.
* `read_oru(message)`: the content: PID (who), OBR (which order, when, by whom), OBX (the
  results, or the sender's own PDF in an ED value). Problems here are errors (AE).

The splitting is written here rather than taken from `hl7.parse`: that parser trusts MSH-1/2
(it asserts on odd separators) and its `unescape` raises on some malformed sequences, while
every byte string must end in an ACK here, never in a traceback. HL7 v2's grammar is small
enough that the whole reader stays readable.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum

from vigie.records.receive import Sender


# HL7 table 0357, the codes used in ERR.
class ErrorCode(IntEnum):
    SEGMENT_SEQUENCE = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_VERSION = 203
    INTERNAL_ERROR = 207


ERROR_TEXT = {
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    ErrorCode.INTERNAL_ERROR: "Application internal error",
}

VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
# HL7 table 0211 values we decode, and the Python codec for each. An empty MSH-18 means
# ASCII by the standard; we hold senders to it rather than guess (a guessed charset turns
# "Hélène" into "HÃ©lÃ¨ne" in a medical record).
CHARSETS = {"": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8"}
# France's INS-NIR (ANS, "Référentiel INS"): the OID in PID-3's assigning authority.
INS_NIR_OID = "1.2.250.1.213.1.4.8"
# Identifier type codes (HL7 table 0203) that mean "this system's patient number".
_IPP_TYPES = frozenset({"", "PI", "PT", "MR"})
_ED_SUBTYPES = {"PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg",
                "PNG": "image/png"}  # fmt: skip
VALUE_TYPES = frozenset({"NM", "ST", "TX", "FT", "SN", "CE", "CWE", "CNE", "ED", "DT", "TS"})
_TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?")


class HL7Error(Exception):
    """A message we do not take; `ack_code` and `code` go to MSA-1 and ERR."""

    def __init__(
        self,
        ack_code: str,
        code: ErrorCode,
        text: str,
        *,
        segment: str = "",
        sequence: int = 1,
        position: int = 0,
    ) -> None:
        super().__init__(text)
        self.ack_code = ack_code
        self.code = code
        self.text = text
        self.segment = segment
        self.sequence = sequence
        self.position = position


def _reject(code: ErrorCode, text: str, segment: str = "MSH", position: int = 0) -> HL7Error:
    return HL7Error("AR", code, text, segment=segment, position=position)


def _error(
    code: ErrorCode, text: str, segment: str = "", sequence: int = 1, position: int = 0
) -> HL7Error:
    return HL7Error("AE", code, text, segment=segment, sequence=sequence, position=position)


@dataclass(frozen=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


# A field is a list of repetitions, each a list of components, each a list of subcomponents:
# always that deep, so code reads `field[rep][comp][sub]` without type checks.
Field = list[list[list[str]]]


@dataclass
class Segment:
    name: str
    # fields[n] is field n (1-based, as HL7 numbers them); fields[0] is the name.
    fields: list[Field]
    raw: list[str]
    separators: Separators

    def value(self, number: int, component: int = 1, subcomponent: int = 1, rep: int = 0) -> str:
        """The unescaped text at a position (1-based like HL7), "" when absent."""
        try:
            text = self.fields[number][rep][component - 1][subcomponent - 1]
        except IndexError:
            return ""
        if text == '""':  # HL7's explicit null
            return ""
        return unescape(text, self.separators)

    def repetitions(self, number: int) -> list[list[list[str]]]:
        if number >= len(self.fields):
            return []
        return self.fields[number]

    def has(self, number: int) -> bool:
        return number < len(self.raw) and self.raw[number] not in ("", '""')


@dataclass
class Message:
    separators: Separators
    segments: list[Segment]
    charset: str
    version: str
    control_id: str
    message_type: str

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def sending_application(self) -> str:
        return self.msh.value(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.value(4)

    @property
    def source(self) -> str:
        """Who sent it, as the duplicate check knows it: MSH-3^MSH-4 (their namespace ids)."""
        return f"{self.sending_application}^{self.sending_facility}"[:200]


@dataclass(frozen=True)
class Header:
    """What an ACK needs from a message, even one we could not fully read."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""
    trigger: str = ""
    charset: str = ""


def unescape(text: str, seps: Separators) -> str:
    """Resolve HL7 escape sequences (v2.5.1 §2.7): separators, hex, formatting.

    Highlighting (\\H\\, \\N\\) and character-set switches (\\C..\\, \\M..\\) carry no text
    and are dropped; an unknown or unterminated sequence is kept literally rather than
    losing what the sender wrote.
    """
    esc = seps.escape
    if esc not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        end = text.find(esc, i + 1) if char == esc else -1
        if end == -1:
            out.append(char)
            i += 1
            continue
        out.append(_escape_value(text[i + 1 : end], seps, text[i : end + 1]))
        i = end + 1
    return "".join(out)


def _escape_value(code: str, seps: Separators, literal: str) -> str:
    simple = {
        "F": seps.field,
        "S": seps.component,
        "T": seps.subcomponent,
        "R": seps.repetition,
        "E": seps.escape,
        "H": "",
        "N": "",
        ".br": "\n",
        ".fi": "",
        ".nf": "",
    }
    if code in simple:
        return simple[code]
    if code.startswith("X") and len(code) > 1 and len(code) % 2 == 1:
        try:
            raw = bytes.fromhex(code[1:])
        except ValueError:
            return literal
        # The bytes are in the message's character set; Latin-1 covers ASCII and 8859/1 and
        # never fails, which matters more here than the odd UTF-8 multi-byte hex sequence.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if (
        code[:1] in ("C", "M")
        and len(code) in (5, 7)
        and all(c in "0123456789ABCDEFabcdef" for c in code[1:])
    ):
        return ""
    if code.startswith(".sp"):
        count = code[3:].strip().lstrip("+")
        return "\n" * (min(int(count), 20) if count.isdigit() else 1)
    if code.startswith((".in", ".ti", ".sk", ".ce")):
        return " "
    return literal


def _split_field(text: str, seps: Separators) -> Field:
    return [
        [component.split(seps.subcomponent) for component in rep.split(seps.component)]
        for rep in text.split(seps.repetition)
    ]


def _segment(line: str, seps: Separators) -> Segment:
    if line.startswith("MSH"):
        # MSH-1 is the field separator itself and MSH-2 holds the encoding characters:
        # neither is split.
        rest = line[4:].split(seps.field)
        raw = ["MSH", seps.field, *rest]
        fields: list[Field] = [[[[f]]] for f in raw[:3]]
        fields += [_split_field(f, seps) for f in raw[3:]]
    else:
        raw = line.split(seps.field)
        fields = [_split_field(f, seps) for f in raw]
    return Segment(name=raw[0], fields=fields, raw=raw, separators=seps)


def _separators(text: str) -> Separators:
    if not text.startswith("MSH"):
        raise _reject(
            ErrorCode.SEGMENT_SEQUENCE,
            f"the message must start with an MSH segment, it starts with {text[:8]!r}",
        )
    field_sep = text[3:4]
    if field_sep == "" or field_sep.isalnum() or field_sep in "\r\n \t":
        raise _reject(
            ErrorCode.DATA_TYPE,
            f"MSH-1 (field separator) is {field_sep!r}: it must be one printable "
            "non-alphanumeric character, normally '|'",
            position=1,
        )
    end = text.find(field_sep, 4)
    encoding = text[4:end] if end != -1 else text[4:].split("\r", 1)[0]
    chars = encoding[:4]
    problem = ""
    if len(encoding) not in (4, 5):
        problem = f"has {len(encoding)} characters, expected 4"
    elif len(set(chars + field_sep)) != 5:
        problem = "repeats a character (or repeats MSH-1)"
    elif any(c.isalnum() or c in "\r\n \t" for c in chars):
        problem = "contains a letter, a digit or a blank"
    if problem:
        raise _reject(
            ErrorCode.DATA_TYPE,
            f"MSH-2 (encoding characters) {encoding!r} {problem}: send component, repetition, "
            "escape and subcomponent separators, normally '^~\\&'",
            position=2,
        )
    return Separators(field_sep, chars[0], chars[1], chars[2], chars[3])


def _segment_lines(text: str) -> list[str]:
    # The standard terminates segments with CR; LF and CRLF are tolerated because file-based
    # test tools and some interfaces send them, and no HL7 field may hold a raw line break.
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line for line in lines if line.strip()]


def peek_header(raw: bytes) -> Header:
    """MSH fields for the ACK, read leniently: works on messages `parse` refuses."""
    text = raw.decode("latin-1").lstrip()
    first = _segment_lines(text)[:1]
    if not first or not first[0].startswith("MSH") or len(first[0]) < 5:
        return Header()
    try:
        seps = _separators(first[0])
    except HL7Error:
        seps = Separators(field=first[0][3])
    msh = _segment(first[0], seps)
    return Header(
        sending_application=msh.value(3),
        sending_facility=msh.value(4),
        receiving_application=msh.value(5),
        receiving_facility=msh.value(6),
        control_id=msh.value(10),
        processing_id=msh.value(11),
        version=msh.value(12),
        trigger=msh.value(9, 2),
        charset=msh.value(18),
    )


def parse(raw: bytes) -> Message:
    """The message's structure, or an `HL7Error` (AR) saying what is wrong with its header."""
    # No character set has a NUL in text, and PostgreSQL refuses one in a text column: a NUL
    # means a corrupted or binary message (found by fuzzing on PostgreSQL).
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise _reject(
            ErrorCode.DATA_TYPE,
            f"the message contains a NUL byte (at offset {nul}): it is "
            "corrupted or not text; binary documents go in an OBX of type ED, base64-encoded",
        )
    # MSH itself must be ASCII, so Latin-1 (which maps every byte) reads it whatever MSH-18
    # says; only then is the whole message decoded with the declared character set.
    preview = raw.decode("latin-1").lstrip()
    lines = _segment_lines(preview)
    if not lines:
        raise _reject(ErrorCode.SEGMENT_SEQUENCE, "the message is empty")
    seps = _separators(lines[0])
    msh = _segment(lines[0], seps)
    if len(msh.raw) < 10:
        raise _reject(
            ErrorCode.REQUIRED_FIELD_MISSING,
            f"MSH has only {len(msh.raw) - 1} fields when split on {seps.field!r} (MSH-1): "
            "check the field separator; MSH-9 and MSH-10 are required",
            position=9,
        )
    declared = msh.value(18).strip().upper()
    if declared not in CHARSETS:
        raise _reject(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"MSH-18 (character set) {msh.value(18)!r} is not supported: send ASCII, 8859/1 "
            "or UNICODE UTF-8",
            position=18,
        )
    codec = CHARSETS[declared]
    try:
        text = raw.decode(codec).lstrip()
    except UnicodeDecodeError as exc:
        said = f"MSH-18 declares {declared!r}" if declared else "MSH-18 is empty, which means ASCII"
        raise _reject(
            ErrorCode.DATA_TYPE,
            f"the message cannot be decoded: {said}, but byte 0x{raw[exc.start]:02X} at offset "
            f"{exc.start} is not valid {codec}; declare the character set actually used "
            "(8859/1 or UNICODE UTF-8) in MSH-18",
            position=18,
        ) from None
    segments = [_segment(line, seps) for line in _segment_lines(text)]
    msh = segments[0]
    message_type = f"{msh.value(9, 1)}^{msh.value(9, 2)}"
    control_id = msh.value(10).strip()
    if not control_id:
        raise _reject(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH-10 missing: every message needs a unique control id (it is how a retry is "
            "recognised and how this ACK refers to your message)",
            position=10,
        )
    if len(control_id) > 199:
        raise _reject(ErrorCode.DATA_TYPE, "MSH-10 is longer than 199 characters", position=10)
    if not msh.value(3).strip() and not msh.value(4).strip():
        raise _reject(
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH-3 and MSH-4 missing: name the sending application or facility (retries are "
            "recognised by sender and MSH-10)",
            position=3,
        )
    if message_type.upper() != "ORU^R01":
        raise _reject(
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"message type {message_type!r} (MSH-9) is not accepted here: this interface "
            "takes ORU^R01 (observation results)",
            position=9,
        )
    version = msh.value(12).strip()
    if version not in VERSIONS:
        raise _reject(
            ErrorCode.UNSUPPORTED_VERSION,
            f"HL7 version {version or '(empty)'!r} (MSH-12) is not supported: send one of "
            f"{', '.join(VERSIONS)}",
            position=12,
        )
    return Message(
        separators=seps,
        segments=segments,
        charset=declared,
        version=version,
        control_id=control_id,
        message_type=message_type,
    )


# -- ORU^R01 content ----------------------------------------------------------------------


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


@dataclass(frozen=True)
class Order:
    code: str
    name: str
    observed_at: datetime | None
    author: str
    observations: list[Observation] = field(default_factory=list)

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
    return Observation(
        value_type=value_type,
        code=obx.value(3, 1),
        name=obx.value(3, 2) or obx.value(3, 1),
        value="\n".join(values),
        units=obx.value(6, 2) or obx.value(6, 1),
        reference_range=obx.value(7),
        flags=" ".join(f.strip() for f in flags if f.strip()),
        status=obx.value(11).strip(),
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
    orders: list[Order] = []
    observations: list[Observation] = []
    attachments: list[Attachment] = []
    obr_count = obx_count = 0
    for segment in message.segments[1:]:
        if segment.name == "OBR":
            obr_count += 1
            observations = []
            orders.append(_order(segment, obr_count, observations))
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
    )
