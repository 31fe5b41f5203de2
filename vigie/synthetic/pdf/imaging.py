"""A synthetic imaging report as a clinic's radiology department issues one: exam, findings
by section, a framed conclusion, the radiologist's signature."""

from __future__ import annotations

from reportlab.platypus import Flowable, Spacer, Table, TableStyle

from vigie.lib.pdf_style import (
    BOLD,
    FRAME_WIDTH,
    HEADING,
    LIGHT,
    RULE,
    lines,
    paragraph,
    title_bar,
)
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import ImagingReport
from vigie.synthetic.pdf.letterhead import clinic_header, draw_sections, patient_box, signature
from vigie.synthetic.people import fr_date


def draw(spec: DocumentSpec, report: ImagingReport, patient: PatientSpec) -> list[Flowable]:
    flow = clinic_header(
        "Service d'imagerie médicale",
        [
            f"Examen n° {report.accession}",
            f"{report.modality} du {fr_date(spec.clinical_date)}",
        ],
    )
    prescriber = [
        Spacer(1, 4),
        lines(
            ["Médecin demandeur", report.prescriber.formal_name, report.prescriber.specialty],
            bold_first=True,
        ),
        Spacer(1, 4),
        lines(["Radiologue", report.radiologist.formal_name], bold_first=True),
    ]
    flow += [Spacer(1, 8), patient_box(patient, spec.clinical_date, prescriber), Spacer(1, 10)]
    flow.append(title_bar(report.title))
    flow += draw_sections(report.sections)
    conclusion = Table(
        [
            [
                [
                    paragraph("Conclusion", HEADING),
                    *(paragraph(line, BOLD) for line in report.conclusion),
                ]
            ]
        ],
        colWidths=[FRAME_WIDTH],
    )
    conclusion.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), LIGHT),
                ("BOX", (0, 0), (-1, -1), 0.6, RULE),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    flow += [Spacer(1, 8), conclusion]
    flow.append(
        signature(
            report.radiologist,
            f"Compte rendu validé électroniquement le {fr_date(spec.clinical_date)}",
        )
    )
    return flow
