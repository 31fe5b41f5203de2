"""The PDF of a lab document, drawn from its results (what the physician downloads).

Rendered on download from the same data the page shows (`records.results.ResultSet`), not
at intake: the message is kept as received and its values as data, so a rendering can
change without touching what was stored. It says where it comes from (the sending lab, its
reference) and shows every value as sent: analyte, result, unit, reference range, flag (in
bold red and in words, so it survives a black-and-white printer), the status when it is not
final, the comments. A value too long for a table cell is printed in full below the table.

Laid out in Vigie's one house style (`vigie.lib.pdf_style`). The text is French: it is a
medical document, not UI. reportlab's built-in Helvetica is encoded as Windows-1252, so
characters outside it are replaced by "?" rather than drawn as missing glyphs.
"""

from __future__ import annotations

from datetime import date, datetime
from xml.sax.saxutils import escape

from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

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
from vigie.records.models import Document
from vigie.records.results import Observation, ResultGroup, ResultSet

# Longer than this, a value leaves the table for a paragraph of its own: a table row taller
# than a page cannot be laid out.
_CELL_LIMIT = 300
STATUS_FR = {
    "P": "préliminaire",
    "C": "corrigé",
    "X": "non réalisé",
    "D": "supprimé",
    "I": "en attente",
    "R": "non vérifié",
    "W": "erroné",
}
FLAG_FR = {
    "L": "bas",
    "H": "haut",
    "LL": "critique bas",
    "HH": "critique haut",
    "A": "anormal",
    "AA": "critique",
    "<": "sous le seuil",
    ">": "au-dessus du seuil",
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


def _patient_lines(document: Document) -> list[str]:
    patient = document.patient
    name = " ".join(p for p in (patient.family_name.upper(), patient.given_names) if p)
    born = {"F": "Née", "M": "Né"}.get(patient.sex, "Né(e)")
    lines = [f"Patient : {name}", f"{born} le {_fr_date(patient.birth_date)}"]
    lines.append(f"IPP : {patient.ipp}")
    if patient.ins:
        lines.append(f"INS : {patient.ins}")
    return lines


def flag_text(flag: str) -> str:
    words = [FLAG_FR.get(part, "") for part in flag.split()]
    said = ", ".join(w for w in words if w)
    return f"{flag} ({said})" if said else flag


def _value(observation: Observation) -> str:
    status = STATUS_FR.get(observation.status.upper())
    text = observation.value
    if observation.second_value:
        text += f" ({observation.second_value} {observation.second_unit})".rstrip()
    return f"{text} ({status})" if status else text


def _cells(observation: Observation) -> list[str]:
    return [
        observation.label,
        _value(observation),
        observation.unit,
        observation.reference_range,
        flag_text(observation.flag),
    ]


def _group(group: ResultGroup) -> list[Flowable]:
    flow: list[Flowable] = [_p(group.label or group.code or "Examen", HEADING)]
    details = [f"Date de l'examen : {_fr_datetime(group.observed_at)}"]
    if group.author:
        details.append(f"Biologiste / prescripteur : {group.author}")
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
    for observation in group.observations:
        cells = _cells(observation)
        if any(len(c) > _CELL_LIMIT for c in cells) or observation.comments:
            long_values.append(observation)
        if any(len(c) > _CELL_LIMIT for c in cells):
            continue
        value_style = CELL_ALERT if observation.abnormal else CELL
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
        label = observation.label + (
            f" [{flag_text(observation.flag)}]" if observation.flag else ""
        )
        flow.append(_p(label, CELL_ALERT if observation.abnormal else CELL))
        extra = []
        if any(len(c) > _CELL_LIMIT for c in _cells(observation)):
            extra.append(_value(observation))
            if observation.unit:
                extra.append(f"Unité : {observation.unit}")
            if observation.reference_range:
                extra.append(f"Valeurs de référence : {observation.reference_range}")
        extra += [f"Commentaire : {c}" for c in observation.comments]
        flow.append(_p("\n".join(extra)))
    flow += [_p(f"Commentaire : {c}", SMALL) for c in group.comments]
    return flow


def render_results(document: Document, results: ResultSet) -> bytes:
    """The PDF for `results`; byte-identical for equal arguments (reportlab invariant mode)."""
    source = results.source or document.source_system
    reference = results.reference
    flow: list[Flowable] = [
        *letterhead(clean(source), [], [f"Référence : {clean(reference)}"] if reference else []),
        Spacer(1, 8),
        boxed([_p("\n".join(_patient_lines(document)))], FRAME_WIDTH),
        Spacer(1, 6),
        _p("Résultats d'analyses de biologie médicale", ORG),
    ]
    flow += [_p(c, BODY) for c in results.comments]
    for group in results.groups:
        flow += _group(group)
    if results.attachment is not None:
        flow.append(_p("Le laboratoire a joint son propre compte rendu (PDF) à ce message.", SMALL))
    flow += [
        Spacer(1, 10),
        _p(
            "H : supérieur aux valeurs de référence ; L : inférieur ; HH, LL : valeur critique ; "
            "A : anormal. Les résultats sont à interpréter en fonction du contexte clinique.",
            SMALL,
        ),
        _p(
            f"Mis en page par Vigie à partir des valeurs transmises par {source} ; le message "
            "reçu est conservé tel quel.",
            SMALL,
        ),
    ]
    title = document.title or "Résultats de biologie"
    return build(
        flow,
        footer(clean(f"{source} · {reference}")[:120]),
        title=clean(title),
        author=clean(document.author or source),
        subject=clean(title),
        creator=clean(source),
    )
