"""Synthetic consultation letters (a practitioner's letterhead, the addressee's block) and
discharge summaries (the clinic's letterhead, the stay)."""

from __future__ import annotations

from datetime import date
from xml.sax.saxutils import escape

from reportlab.platypus import Flowable, Paragraph, Spacer

from vigie.lib.pdf_style import BODY, FRAME_WIDTH, SMALL, paragraph, title_bar, two_columns
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import Letter
from vigie.synthetic.pdf.letterhead import (
    CLINIC_CITY,
    CLINIC_NAME,
    CLINIC_STREET,
    clinic_header,
    draw_sections,
    ins_text,
    practitioner_header,
    signature,
    town,
)
from vigie.synthetic.people import Practitioner, fr_date, fr_long_date


def _recipient_block(recipient: Practitioner, town: str, day: date) -> list[str]:
    where = recipient.practice or f"{CLINIC_NAME}, {CLINIC_STREET}, {CLINIC_CITY}"
    street, _, city = where.rpartition(", ")
    return [
        f"{town}, le {fr_long_date(day)}",
        "",
        f"<b>{escape(recipient.formal_name.replace('Dr ', 'Docteur ', 1))}</b>",
        escape(recipient.specialty),
        escape(street),
        escape(city),
    ]


def draw(spec: DocumentSpec, letter: Letter, patient: PatientSpec) -> list[Flowable]:
    day = spec.clinical_date
    ident = (
        f"Patient{'e' if patient.sex == 'F' else ''} : {patient.family_name.upper()} "
        f"{patient.given_names}, né{'e' if patient.sex == 'F' else ''} le "
        f"{fr_date(patient.birth_date)} · IPP {patient.ipp}"
        + (f" · INS {ins_text(patient.ins)}" if patient.ins else "")
    )
    if letter.service is not None and letter.admitted is not None:
        # A summary is longer than a letter: its header takes two lines, not an address block.
        flow = clinic_header(
            f"Service de {letter.service.lower()}",
            [
                f"Séjour du {fr_date(letter.admitted)} au {fr_date(day)}",
                f"Rédigé par {letter.author.formal_name}",
                f"{town(letter.author)}, le {fr_long_date(day)}",
            ],
        )
        recipient = letter.recipient
        where = recipient.practice or f"{CLINIC_NAME}, {CLINIC_STREET}, {CLINIC_CITY}"
        flow += [
            Spacer(1, 6),
            Paragraph(
                f"<b>Destinataire :</b> {escape(recipient.formal_name)} "
                f"({escape(recipient.specialty.lower())}), {escape(where)}",
                BODY,
            ),
        ]
        flow += [Spacer(1, 6), title_bar("Compte rendu d'hospitalisation")]
    else:
        flow = practitioner_header(letter.author, [])
        right = Paragraph(
            "<br/>".join(_recipient_block(letter.recipient, town(letter.author), day)), BODY
        )
        flow += [
            Spacer(1, 10),
            two_columns([Spacer(1, 1)], [right], left_width=FRAME_WIDTH * 0.55),
        ]
        flow += [
            Spacer(1, 12),
            Paragraph(
                f"<b>Objet :</b> {escape(letter.title)} — {escape(letter.subject_line)}", BODY
            ),
        ]
    flow += [Spacer(1, 2), paragraph(ident, SMALL), Spacer(1, 8)]
    flow += [paragraph(chunk) for chunk in letter.opening.split("\n\n")]
    flow += draw_sections(letter.sections)
    flow.append(Spacer(1, 6))
    flow += [paragraph(chunk) for chunk in letter.closing.split("\n\n")]
    flow.append(signature(letter.author, "Signé électroniquement"))
    return flow
