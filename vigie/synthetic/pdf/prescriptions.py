"""A synthetic prescription: the prescriber's letterhead, the patient, the drugs; the
"bizone" form when a long-term condition (ALD) applies."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from vigie.lib.pdf_style import (
    ACCENT,
    ADDRESSEE,
    BOLD,
    FRAME_WIDTH,
    MEDICATION,
    SMALL,
    ZONE,
    lines,
    paragraph,
    title_bar,
    two_columns,
)
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import Prescription
from vigie.synthetic.pdf.letterhead import practitioner_header, signature, town
from vigie.synthetic.people import Medication, age_on, fr_date


def _medication_lines(items: Sequence[Medication]) -> list[Flowable]:
    flow: list[Flowable] = []
    for item in items:
        text = f"<b>{escape(item.drug)}</b><br/>{escape(item.dosage)}"
        if item.duration:
            text += f"<br/>Pendant {escape(item.duration)}"
        flow.append(Paragraph(text, MEDICATION, bulletText="•"))
    return flow


def _zone(heading: str, flow: list[Flowable]) -> Table:
    zone = Table([[[paragraph(heading, ZONE), Spacer(1, 4), *flow]]], colWidths=[FRAME_WIDTH])
    zone.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.8, ACCENT),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return zone


def draw(spec: DocumentSpec, rx: Prescription, patient: PatientSpec) -> list[Flowable]:
    day = spec.clinical_date
    flow = practitioner_header(rx.prescriber, [f"{town(rx.prescriber)}, le {fr_date(day)}"])
    civility = "Madame" if patient.sex == "F" else "Monsieur"
    age = age_on(patient.birth_date, day)
    who = [
        f"{civility} {patient.given_names.split(' ')[0]} {patient.family_name.upper()}",
        f"{age} an{'s' if age > 1 else ''}",
    ]
    if rx.weight_kg is not None:
        who.append(f"Poids : {rx.weight_kg} kg")
    flow += [
        Spacer(1, 14),
        two_columns(
            [Spacer(1, 1)],
            [lines(who, ADDRESSEE, bold_first=True)],
            left_width=FRAME_WIDTH * 0.55,
        ),
    ]
    flow += [Spacer(1, 12), title_bar("Ordonnance"), Spacer(1, 10)]
    if rx.ald_items:
        # The "bizone" form: treatments of the long-term condition (fully reimbursed) above,
        # everything else below, as the Assurance maladie requires.
        flow.append(
            _zone(
                "Prescriptions relatives au traitement de l'affection de longue durée reconnue (liste ou hors liste) — AFFECTION EXONÉRANTE",
                _medication_lines(rx.ald_items),
            )
        )
        flow.append(Spacer(1, 8))
        flow.append(
            _zone(
                "Prescriptions SANS RAPPORT avec l'affection de longue durée — MALADIES INTERCURRENTES",
                _medication_lines(rx.items) or [paragraph("Néant", SMALL)],
            )
        )
    else:
        flow += _medication_lines(rx.items)
    flow.append(Spacer(1, 8))
    if rx.renewals:
        flow.append(paragraph(f"Ordonnance à renouveler {rx.renewals} fois.", BOLD))
    flow.append(signature(rx.prescriber, "Signé électroniquement"))
    return flow
