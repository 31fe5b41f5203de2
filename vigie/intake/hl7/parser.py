"""Reading HL7 v2 ORU^R01 messages (v2.3 to v2.5.1) into what `receive()` needs.

Two steps, each refusing with an `HL7Error` that carries the ACK code, the HL7 table 0357
error code and a sentence an integrator can act on:

* `parse(raw)`: the envelope. Separators come from MSH-1/MSH-2, the character set from
  MSH-18 (the bytes are decoded with it, strictly), then MSH-9 (type), MSH-10 (control id),
  MSH-12 (version) are checked. Problems here are rejections (AR): resending the same bytes
  can never work.
* `read_oru(message)`, in `oru.py`: the content: PID (who), OBR (which order, when, by
  whom), OBX (the results, or the sender's own PDF in an ED value). Problems here are errors
  (AE).

The splitting is written here rather than taken from `hl7.parse`: that parser trusts MSH-1/2
(it asserts on odd separators) and its `unescape` raises on some malformed sequences, while
every byte string must end in an ACK here, never in a traceback. HL7 v2's grammar is small
enough that the whole reader stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


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
    # Most fields hold one plain value (or nothing): the same structure, without three
    # splits and two list comprehensions each (a tenth of a message's parse).
    if seps.component not in text and seps.repetition not in text and seps.subcomponent not in text:
        return [[[text]]]
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
    text, seps, declared = _decode(raw)
    segments = [_segment(line, seps) for line in _segment_lines(text)]
    message_type, control_id, version = _check_header(segments[0])
    return Message(
        separators=seps,
        segments=segments,
        charset=declared,
        version=version,
        control_id=control_id,
        message_type=message_type,
    )


def _decode(raw: bytes) -> tuple[str, Separators, str]:
    """The text decoded with the character set MSH-18 declares, its separators, and MSH-18."""
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
    return text, seps, declared


def _check_header(msh: Segment) -> tuple[str, str, str]:
    """MSH-9 (type), MSH-10 (control id) and MSH-12 (version), each checked."""
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
    return message_type, control_id, version
