"""A synthetic laboratory report laid out as a French medical laboratory prints one: the
laboratory's letterhead, the patient, a table of results with out-of-range values flagged."""

from __future__ import annotations

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Spacer, Table, TableStyle

from vigie.lib.pdf_style import (
    ACCENT,
    ALERT,
    COMMENT,
    FRAME_WIDTH,
    LIGHT,
    RULE,
    SMALL,
    letterhead,
    lines,
    paragraph,
    title_bar,
)
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import LabReport
from vigie.synthetic.pdf.letterhead import (
    LAB_CITY,
    LAB_FINESS,
    LAB_NAME,
    LAB_PHONE,
    LAB_STREET,
    patient_box,
    signature,
)


def draw(spec: DocumentSpec, report: LabReport, patient: PatientSpec) -> list[Flowable]:
    sampled, validated = report.sampled_at, report.validated_at
    flow = letterhead(
        LAB_NAME,
        [
            "Laboratoire de biologie médicale multisite",
            f"{LAB_STREET}, {LAB_CITY}",
            f"Tél. {LAB_PHONE} · FINESS {LAB_FINESS}",
        ],
        [
            f"Dossier n° {report.request_number}",
            f"Prélevé le {sampled:%d/%m/%Y à %H:%M}",
            f"Édité le {validated:%d/%m/%Y à %H:%M}",
        ],
    )
    prescriber = [
        Spacer(1, 4),
        lines(
            ["Prescripteur", report.prescriber.formal_name, report.prescriber.specialty],
            bold_first=True,
        ),
        Spacer(1, 4),
        paragraph(f"Prélèvement : sang veineux, le {sampled:%d/%m/%Y} à {sampled:%H:%M}", SMALL),
    ]
    flow += [Spacer(1, 8), patient_box(patient, spec.clinical_date, prescriber), Spacer(1, 10)]
    flow.append(title_bar(report.title))
    flow.append(Spacer(1, 6))

    header = ["Analyse", "Résultat", "Unité", "%", "Valeurs de référence", ""]
    rows: list[list[str]] = [header]
    style: list[tuple[object, ...]] = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
        ("BACKGROUND", (0, 0), (-1, 0), LIGHT),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, ACCENT),
        ("ALIGN", (1, 0), (1, -1), "RIGHT"),
        ("ALIGN", (3, 0), (3, -1), "RIGHT"),
        ("ALIGN", (4, 0), (4, -1), "CENTER"),
        ("ALIGN", (5, 0), (5, -1), "CENTER"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.2),
    ]
    for section in report.sections:
        rows.append([section.title.upper(), "", "", "", "", ""])
        r = len(rows) - 1
        style += [
            ("SPAN", (0, r), (-1, r)),
            ("FONT", (0, r), (-1, r), "Helvetica-Bold", 8.5),
            ("TEXTCOLOR", (0, r), (-1, r), ACCENT),
            ("TOPPADDING", (0, r), (-1, r), 6),
            ("LINEBELOW", (0, r), (-1, r), 0.4, RULE),
        ]
        for row in section.rows:
            percent = "" if row.percent is None else f"{row.percent:.1f}".replace(".", ",")
            rows.append(
                ["   " + row.label, row.value_text, row.unit, percent, row.range_text, row.flag]
            )
            if row.flag:
                r = len(rows) - 1
                style += [
                    ("FONT", (1, r), (1, r), "Helvetica-Bold", 9),
                    ("FONT", (5, r), (5, r), "Helvetica-Bold", 9),
                    ("TEXTCOLOR", (1, r), (1, r), ALERT),
                    ("TEXTCOLOR", (5, r), (5, r), ALERT),
                ]
    widths = [62 * mm, 22 * mm, 26 * mm, 14 * mm, 38 * mm]
    table = Table(rows, colWidths=[*widths, FRAME_WIDTH - sum(widths)], repeatRows=1)
    table.setStyle(TableStyle(style))
    flow.append(table)
    flow.append(Spacer(1, 8))
    if report.comment:
        flow.append(paragraph(f"Commentaire du biologiste : {report.comment}", COMMENT))
    flow.append(
        paragraph(
            "H : valeur supérieure aux valeurs de référence ; L : valeur inférieure. "
            "Les résultats sont à interpréter en fonction du contexte clinique.",
            SMALL,
        )
    )
    flow.append(
        signature(
            report.biologist,
            f"Validé le {validated:%d/%m/%Y à %H:%M}",
        )
    )
    return flow
