"""HL7 v2 original-mode acknowledgements: MSH (sender and receiver swapped), MSA, ERR.

The ERR segment is written twice over: ERR-1 (the v2.3/v2.4 form, segment^sequence^field
^code&text&table) and ERR-2/3/4/8 (the v2.5 form). Interface engines read one or the other
depending on the version they were configured for; the extra fields cost nothing to those
that ignore them. MSA-3 repeats the sentence, because many engines only log MSA.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from vigie.intake.hl7.parser import (
    CHARSETS,
    ERROR_TEXT,
    VERSIONS,
    ErrorCode,
    Header,
    HL7Error,
    Separators,
)

ACCEPT = "AA"
ERROR = "AE"
REJECT = "AR"
RECEIVER = "VIGIE"
DEFAULT_VERSION = "2.5.1"
_SEPARATORS = Separators()


def escape(text: str, seps: Separators = _SEPARATORS) -> str:
    """Text made safe for one HL7 component: separators and line breaks escaped."""
    esc = seps.escape
    replacements = {
        esc: f"{esc}E{esc}",
        seps.field: f"{esc}F{esc}",
        seps.component: f"{esc}S{esc}",
        seps.repetition: f"{esc}R{esc}",
        seps.subcomponent: f"{esc}T{esc}",
        "\r": f"{esc}.br{esc}",
        "\n": f"{esc}.br{esc}",
    }
    return "".join(replacements.get(c, c) for c in text if c >= " " or c in "\r\n")


def new_control_id() -> str:
    return f"VIG{secrets.token_hex(9).upper()}"


def build(header: Header, code: str, error: HL7Error | None = None) -> bytes:
    """The ACK for a message with this header; `error` fills MSA-3 and ERR."""
    seps = _SEPARATORS
    version = header.version if header.version in VERSIONS else DEFAULT_VERSION
    charset = header.charset.strip().upper()
    charset = charset if charset in CHARSETS else ""
    now = datetime.now().strftime("%Y%m%d%H%M%S")  # HL7 TS: the receiver's local time
    trigger = header.trigger if header.trigger.isalnum() else "R01"
    msh = [
        "MSH",
        f"{seps.component}{seps.repetition}{seps.escape}{seps.subcomponent}",
        escape(header.receiving_application or RECEIVER),
        escape(header.receiving_facility),
        escape(header.sending_application),
        escape(header.sending_facility),
        now,
        "",
        f"ACK^{escape(trigger[:3])}^ACK",
        new_control_id(),
        escape(header.processing_id[:3]) or "P",
        version,
        "",
        "",
        "",
        "",
        "",
        charset,
    ]
    lines = [seps.field.join(msh).rstrip(seps.field)]
    msa = ["MSA", code, escape(header.control_id)]
    if error is not None:
        msa.append(escape(error.text[:500]))
    lines.append(seps.field.join(msa))
    if error is not None:
        lines.append(_err(error))
    codec = CHARSETS.get(charset, "ascii")
    return "\r".join(lines).encode(codec, errors="replace") + b"\r"


def _err(error: HL7Error) -> str:
    code = int(error.code)
    label = ERROR_TEXT.get(ErrorCode(code), "")
    location = [
        error.segment,
        str(error.sequence) if error.segment else "",
        str(error.position) if error.position else "",
    ]
    err1 = "^".join([*location, f"{code}&{escape(label)}&HL70357"])
    err2 = "^".join(location).rstrip("^")
    err3 = f"{code}^{escape(label)}^HL70357"
    severity = "E"
    return "|".join(["ERR", err1, err2, err3, severity, "", "", "", escape(error.text[:500])])
