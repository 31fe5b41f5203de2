"""An ORU^R01 as lab results data: `read_oru`'s reading turned into `records.results`.

Every OBX value is kept as sent (its text), with its number when it is one: NM as written,
SN when it has no comparator ("^5.2", not "<^0.5"), ST/TX/CE as text. Codes keep their
system (OBX-3.3: "LN" is LOINC, anything else the lab's own). Several OBR are several
groups, in order; NTE comments stay with the OBX, OBR or report they follow.
"""

from __future__ import annotations

import re

from vigie.intake.hl7.oru import LabResult, Observation, Order
from vigie.intake.hl7.parser import ErrorCode, HL7Error, Message
from vigie.records import results as lab
from vigie.records.results import ResultsFormatError

# Types whose value is never a number, even when it reads as one (a coded answer "1").
_TEXT_TYPES = frozenset({"ST", "TX", "FT", "CE", "CWE", "CNE", "DT", "TS"})
# A control character the lab left in a field (the message itself keeps it, as received):
# shown as U+FFFD, visibly, rather than refusing the whole report for it.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(value: str) -> str:
    """Free text (values, comments): line breaks kept."""
    return _CONTROL_RE.sub("\ufffd", value.replace("\r\n", "\n").replace("\r", "\n"))


def _line(value: str) -> str:
    """One-line fields (labels, codes, units, ranges): any line break becomes a space."""
    return " ".join(_text(value).split())


def _observation(observation: Observation, order: Order) -> lab.Observation:
    value = _text(observation.value)
    numeric = None if observation.value_type in _TEXT_TYPES else lab.parse_number(value)
    return lab.Observation.from_text(
        code=_line(observation.code),
        code_system=_line(observation.code_system),
        label=_line(observation.name) or _line(observation.code),
        value=value,
        numeric=numeric,
        unit=_line(observation.units),
        reference_range=_line(observation.reference_range),
        flag=_line(observation.flags),
        status=_line(observation.status),
        observed_at=observation.observed_at or order.observed_at,
        comments=tuple(_text(c) for c in observation.comments),
        value_type=observation.value_type,
    )


def to_results(result: LabResult, message: Message, source: str) -> lab.ResultSet:
    """The result set of `result`; an HL7Error (AE) naming the problem if a value cannot
    be kept as data (a control character in a label, a value longer than any lab's)."""
    try:
        groups = tuple(
            lab.ResultGroup(
                code=_line(order.code),
                label=_line(order.name or order.code),
                observed_at=order.observed_at,
                author=_line(order.author),
                observations=tuple(_observation(o, order) for o in order.observations),
                comments=tuple(_text(c) for c in order.comments),
            )
            for order in result.orders
        )
        attachment = result.attachment
        return lab.ResultSet(
            source=_line(source),
            groups=groups,
            reference=_line(
                next((o.filler_number for o in result.orders if o.filler_number), "")
                or message.control_id[:200]
            ),
            comments=tuple(_text(c) for c in result.comments),
            attachment=lab.Attachment.of(attachment.content_type, attachment.data)
            if attachment is not None
            else None,
        )
    except ResultsFormatError as exc:
        raise HL7Error(
            "AE", ErrorCode.DATA_TYPE, f"a result cannot be kept as sent: {exc}", segment="OBX"
        ) from None
