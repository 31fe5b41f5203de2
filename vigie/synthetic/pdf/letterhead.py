"""The synthetic documents' issuers and the blocks every kind of them shares: who the clinic
and the laboratory are, the patient framed as a window envelope shows it, practitioners'
letterheads and signatures, titled sections. The typography is Vigie's one house style
(`vigie.lib.pdf_style`), the same as the lab reports drawn from HL7 messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from xml.sax.saxutils import escape

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer, Table

from vigie.lib.pdf_style import (
    BULLET,
    FRAME_WIDTH,
    HEADING,
    SIGNATURE,
    SMALL,
    boxed,
    letterhead,
    lines,
    paragraph,
    two_columns,
)
from vigie.synthetic.clinic import PatientSpec
from vigie.synthetic.payloads import Section
from vigie.synthetic.people import Practitioner, age_on, fr_date, luhn_complete

# On every page of a demo document, so nobody mistakes demo output for a real record; left
# out of decoys, which must not tell a thief who got their bytes that they are decoys.
FICTITIOUS_NOTICE = "Document fictif — démonstration Vigie"

CLINIC_NAME = "Clinique des Tilleuls"
CLINIC_STREET = "8 avenue Rockefeller"
CLINIC_CITY = "69008 Lyon"
CLINIC_PHONE = "04 72 68 41 00"
CLINIC_FINESS = luhn_complete("69078945")  # 9 digits with a Luhn key, like a real FINESS
LAB_NAME = "BIOMED Confluence"
LAB_STREET = "12 cours Charlemagne"
LAB_CITY = "69002 Lyon"
LAB_PHONE = "04 78 42 16 30"
LAB_FINESS = luhn_complete("69004321")


def ins_text(ins: str) -> str:
    """The NIR grouped as on a carte Vitale: 2 56 04 69 383 045 12."""
    return " ".join((ins[0], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:]))


def patient_lines(patient: PatientSpec, day: date) -> list[str]:
    born = "Née" if patient.sex == "F" else "Né"
    civility = "Mme" if patient.sex == "F" else "M."
    age = age_on(patient.birth_date, day)
    rows = [
        f"{civility} {patient.family_name.upper()} {patient.given_names}",
        f"{born} le {fr_date(patient.birth_date)} ({age} an{'s' if age > 1 else ''})",
        f"IPP : {patient.ipp}",
    ]
    if patient.ins:
        rows.append(f"INS : {ins_text(patient.ins)}")
    rows += [patient.address_line, f"{patient.postal_code} {patient.city}"]
    return rows


def patient_box(patient: PatientSpec, day: date, left: Sequence[Flowable]) -> Table:
    """Left: who asked; right: the patient framed, where a window envelope would show it."""
    box = boxed([lines(patient_lines(patient, day), bold_first=True)], 80 * mm)
    return two_columns(list(left), [box], left_width=FRAME_WIDTH - 82 * mm)


def clinic_header(service: str, right: Sequence[str]) -> list[Flowable]:
    return letterhead(
        CLINIC_NAME,
        [
            service,
            f"{CLINIC_STREET}, {CLINIC_CITY}",
            f"Tél. {CLINIC_PHONE} · FINESS {CLINIC_FINESS}",
        ],
        right,
    )


def practitioner_header(author: Practitioner, right: Sequence[str]) -> list[Flowable]:
    where = author.practice or f"{CLINIC_NAME}, {CLINIC_STREET}, {CLINIC_CITY}"
    phone = "04 78 " + author.rpps[3:5] + " " + author.rpps[5:7] + " " + author.rpps[7:9]
    return letterhead(
        author.formal_name,
        [
            author.specialty,
            where,
            f"Tél. {phone if author.practice else CLINIC_PHONE}",
            f"RPPS {author.rpps}",
        ],
        right,
    )


def town(author: Practitioner) -> str:
    where = author.practice or CLINIC_CITY
    return where.rsplit(" ", 1)[-1]  # "69003 Lyon" -> "Lyon": letters are dated from a town


def signature(author: Practitioner, note: str) -> KeepTogether:
    block = [
        paragraph(author.formal_name, SIGNATURE),
        paragraph(author.specialty, SMALL),
        paragraph(note, SMALL),
    ]
    return KeepTogether(
        [Spacer(1, 4), two_columns([Spacer(1, 1)], block, left_width=FRAME_WIDTH * 0.55)]
    )


def draw_section(section: Section) -> list[Flowable]:
    flow: list[Flowable] = [paragraph(section.heading, HEADING)]
    for text in section.paragraphs:
        if section.as_list:
            flow.append(Paragraph(escape(text), BULLET, bulletText="•"))
        else:
            flow.append(paragraph(text))
    return flow


# Short lists that read well side by side, which keeps letters and summaries to one page.
_SIDE_BY_SIDE = ("Antécédents", "Traitement habituel")


def draw_sections(sections: Sequence[Section]) -> list[Flowable]:
    flow: list[Flowable] = []
    index = 0
    while index < len(sections):
        pair = tuple(s.heading for s in sections[index : index + 2])
        if pair == _SIDE_BY_SIDE:
            left, right = draw_section(sections[index]), draw_section(sections[index + 1])
            flow.append(two_columns(left, right, left_width=FRAME_WIDTH * 0.45))
            index += 2
        else:
            flow += draw_section(sections[index])
            index += 1
    return flow
