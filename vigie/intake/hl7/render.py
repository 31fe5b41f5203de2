"""A readable lab report PDF drawn from an ORU^R01's OBX values, for senders without one.

The physician reads this instead of the sender's own layout, so it says where it comes
from (sending facility, message control id) and shows every value as sent: analyte, result,
unit, reference range, abnormal flag (H/L/HH/LL and the other table 0078 flags in bold red),
and the status when it is not final. Nothing is dropped: a value too long for a table cell
is printed in full below the table.

Laid out in Vigie's one house style (`vigie.lib.pdf_style`), the synthetic documents' too, so
a physician reads it like the rest of a patient's file. The text is French: it is a medical
document, not UI. reportlab's built-in Helvetica is encoded as Windows-1252, so characters
outside it are replaced by "?" rather than drawn as missing glyphs.
"""

from __future__ import annotations

from datetime import date, datetime
from xml.sax.saxutils import escape

from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from vigie.intake.hl7.oru import LabResult, Observation, Order
from vigie.lib.pdf_style import (
    BODY,
    CELL,
    CELL_ALERT,
    FRAME_WIDTH,
    HEADING,
    ORG,
    RESULTS_HEADER,
    RULE,
    SMALL,
    boxed,
    build,
    footer,
    letterhead,
)

# Longer than this, a value leaves the table for a paragraph of its own: a table row taller
# than a page cannot be laid out.
_CELL_LIMIT = 300
# Table 0078 flags that mean "outside the reference range" and deserve the eye.
ABNORMAL_FLAGS = frozenset({"H", "L", "HH", "LL", "A", "AA", "<", ">", "HU", "LU", "POS"})
_STATUS = {
    "P": "préliminaire",
    "C": "corrigé",
    "X": "non réalisé",
    "D": "supprimé",
    "I": "en attente",
    "R": "non vérifié",
    "W": "erroné",
}


def clean(text: str) -> str:
    """Text Helvetica can draw: control characters dropped, the rest of Unicode as "?"."""
    text = "".join(c for c in text if c >= " " or c == "\n")
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _p(text: str, style: ParagraphStyle = BODY) -> Paragraph:
    return Paragraph(escape(clean(text)).replace("\n", "<br/>"), style)


def _fr_date(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else "non précisée"


def _fr_datetime(value: datetime | None) -> str:
    if value is None:
        return "non précisée"
    if value.hour == value.minute == 0:
        return value.strftime("%d/%m/%Y")
    return value.strftime("%d/%m/%Y à %H:%M")


def _patient_lines(result: LabResult) -> list[str]:
    patient = result.patient
    name = " ".join(p for p in (patient.family_name.upper(), patient.given_names) if p)
    born = {"F": "Née", "M": "Né"}.get(patient.sex, "Né(e)")
    lines = [f"Patient : {name or 'nom non transmis'}"]
    lines.append(f"{born} le {_fr_date(patient.birth_date)}")
    if patient.sex:
        lines.append(f"Sexe : {patient.sex}")
    if result.ipp_text:
        source = f" ({patient.ipp_source})" if patient.ipp_source else ""
        lines.append(f"IPP : {result.ipp_text}{source}")
    if patient.ins:
        lines.append(f"INS : {patient.ins}")
    return lines


def _is_abnormal(flags: str) -> bool:
    return any(flag.upper() in ABNORMAL_FLAGS for flag in flags.split())


def _value(observation: Observation) -> str:
    status = _STATUS.get(observation.status.upper())
    return f"{observation.value} ({status})" if status else observation.value


def _order(order: Order) -> list[Flowable]:
    flow: list[Flowable] = [_p(order.title or "Examen", HEADING)]
    details = [f"Date de l'examen : {_fr_datetime(order.observed_at)}"]
    if order.author:
        details.append(f"Biologiste / prescripteur : {order.author}")
    flow.append(_p("\n".join(details), SMALL))
    flow.append(Spacer(1, 4))
    header = ["Analyse", "Résultat", "Unité", "Valeurs de référence", "Indicateur"]
    rows: list[list[Flowable | str]] = [[_p(h, CELL) for h in header]]
    style: list[tuple[object, ...]] = [
        *RESULTS_HEADER,
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, RULE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    long_values: list[Observation] = []
    for observation in order.observations:
        cells = [
            observation.name,
            _value(observation),
            observation.units,
            observation.reference_range,
            observation.flags,
        ]
        if any(len(c) > _CELL_LIMIT for c in cells):
            long_values.append(observation)
            continue
        abnormal = _is_abnormal(observation.flags)
        value_style = CELL_ALERT if abnormal else CELL
        rows.append(
            [
                _p(cells[0], CELL),
                _p(cells[1], value_style),
                _p(cells[2], CELL),
                _p(cells[3], CELL),
                _p(cells[4], value_style),
            ]
        )
    if len(rows) > 1:
        widths = [56 * mm, 32 * mm, 22 * mm, 34 * mm]
        table = Table(rows, colWidths=[*widths, FRAME_WIDTH - sum(widths)], repeatRows=1)
        table.setStyle(TableStyle(style))
        flow.append(table)
    for observation in long_values:
        flow.append(Spacer(1, 4))
        label = observation.name + (f" [{observation.flags}]" if observation.flags else "")
        flow.append(_p(label, CELL_ALERT if _is_abnormal(observation.flags) else CELL))
        extra = [_value(observation)]
        if observation.units:
            extra.append(f"Unité : {observation.units}")
        if observation.reference_range:
            extra.append(f"Valeurs de référence : {observation.reference_range}")
        flow.append(_p("\n".join(extra)))
    return flow


def render_report(result: LabResult, *, control_id: str, version: str) -> bytes:
    """The PDF for `result`; byte-identical for equal arguments (reportlab invariant mode)."""
    facility = result.source_name or "Laboratoire"
    flow: list[Flowable] = [
        *letterhead(clean(facility), [], [f"Message n° {clean(control_id)}"]),
        Spacer(1, 8),
        boxed([_p("\n".join(_patient_lines(result)))], FRAME_WIDTH),
        Spacer(1, 6),
        _p("Résultats d'analyses de biologie médicale", ORG),
    ]
    for order in result.orders:
        flow += _order(order)
    flow += [
        Spacer(1, 10),
        _p(
            "H : supérieur aux valeurs de référence ; L : inférieur ; HH, LL : valeur critique ; "
            "A : anormal. Les résultats sont à interpréter en fonction du contexte clinique.",
            SMALL,
        ),
        _p(
            f"Compte rendu mis en page par Vigie à partir du message HL7 v{version} ORU^R01 "
            f"n° {control_id} de {facility} ; les valeurs sont celles transmises par le "
            "laboratoire.",
            SMALL,
        ),
    ]
    title = result.title or "Résultats de biologie"
    return build(
        flow,
        footer(clean(f"{facility} · HL7 {control_id}")[:120]),
        title=clean(title),
        author=clean(result.author or facility),
        subject=clean(title),
        creator=clean(facility),
    )
