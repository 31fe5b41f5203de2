"""Draw the demo documents as PDFs that look like what a French clinic really receives.

Pure layout: every value and sentence is already in the `DocumentSpec`'s payload, so the same
spec always gives the same bytes (reportlab's `invariant` mode fixes the creation date and the
document id that it would otherwise take from the clock).

Only reportlab's built-in Helvetica is used (no font files to ship). It is encoded as
Windows-1252, which covers French accents; the content writes "coeur", not the ligature, so
text search and extraction never depend on it (a test checks every string fits the encoding).
Every page carries a small "Document fictif" footer so nobody mistakes demo output for a real
record.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import date
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from vigie.demo.clinic import DocumentSpec, PatientSpec
from vigie.demo.payloads import Certificate, ImagingReport, LabReport, Letter, Prescription, Section
from vigie.demo.pdf_style import (
    ACCENT,
    ADDRESSEE,
    ALERT,
    BODY,
    BOLD,
    BULLET,
    CERTIFICATE,
    CLINIC_CITY,
    CLINIC_FINESS,
    CLINIC_NAME,
    CLINIC_PHONE,
    CLINIC_STREET,
    COMMENT,
    FOOTER,
    FRAME_WIDTH,
    GREY,
    HEADING,
    LAB_CITY,
    LAB_FINESS,
    LAB_NAME,
    LAB_PHONE,
    LAB_STREET,
    LIGHT,
    MARGIN,
    MEDICATION,
    ORG,
    PAGE_WIDTH,
    RIGHT,
    RULE,
    SIGNATURE,
    SMALL,
    TITLE,
    ZONE,
)
from vigie.demo.people import Medication, Practitioner, age_on, fr_date, fr_long_date


def _p(text: str, style: ParagraphStyle = BODY) -> Paragraph:
    """A paragraph of plain text: escaped, since payload text may contain "<" or "&"."""
    return Paragraph(escape(text), style)


def _lines(
    lines: Sequence[str], style: ParagraphStyle = BODY, *, bold_first: bool = False
) -> Paragraph:
    parts = [escape(line) for line in lines]
    if bold_first and parts:
        parts[0] = f"<b>{parts[0]}</b>"
    return Paragraph("<br/>".join(parts), style)


def _ins_text(ins: str) -> str:
    """The NIR grouped as on a carte Vitale: 2 56 04 69 383 045 12."""
    return " ".join((ins[0], ins[1:3], ins[3:5], ins[5:7], ins[7:10], ins[10:13], ins[13:]))


def _patient_lines(patient: PatientSpec, day: date) -> list[str]:
    born = "Née" if patient.sex == "F" else "Né"
    civility = "Mme" if patient.sex == "F" else "M."
    age = age_on(patient.birth_date, day)
    lines = [
        f"{civility} {patient.family_name.upper()} {patient.given_names}",
        f"{born} le {fr_date(patient.birth_date)} ({age} an{'s' if age > 1 else ''})",
        f"IPP : {patient.ipp}",
    ]
    if patient.ins:
        lines.append(f"INS : {_ins_text(patient.ins)}")
    lines += [patient.address_line, f"{patient.postal_code} {patient.city}"]
    return lines


def _patient_box(patient: PatientSpec, day: date, left: Sequence[Flowable]) -> Table:
    """Left: who asked; right: the patient framed, where a window envelope would show it."""
    box = Table([[_lines(_patient_lines(patient, day), bold_first=True)]], colWidths=[80 * mm])
    box.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.6, RULE),
                ("BACKGROUND", (0, 0), (-1, -1), LIGHT),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    return _two_columns(list(left), [box], left_width=FRAME_WIDTH - 82 * mm)


def _two_columns(
    left: list[Flowable], right: list[Flowable], *, left_width: float = FRAME_WIDTH / 2
) -> Table:
    table = Table([[left, right]], colWidths=[left_width, FRAME_WIDTH - left_width])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return table


def _rule(width: float = FRAME_WIDTH, thickness: float = 1.2) -> Table:
    line = Table([[""]], colWidths=[width], rowHeights=[2])
    line.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), thickness, ACCENT)]))
    return line


def _title_bar(text: str) -> Table:
    bar = Table([[_p(text.upper(), TITLE)]], colWidths=[FRAME_WIDTH])
    bar.setStyle(
        TableStyle(
            [
                ("LINEABOVE", (0, 0), (-1, 0), 1.2, ACCENT),
                ("LINEBELOW", (0, 0), (-1, 0), 1.2, ACCENT),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return bar


def _org_header(name: str, lines: Sequence[str], right: Sequence[str]) -> list[Flowable]:
    left = [_p(name, ORG), _lines(lines, SMALL)]
    return [
        _two_columns(left, [_lines(right, RIGHT, bold_first=True)], left_width=FRAME_WIDTH * 0.58),
        Spacer(1, 3),
        _rule(),
    ]


def _clinic_header(service: str, right: Sequence[str]) -> list[Flowable]:
    return _org_header(
        CLINIC_NAME,
        [
            service,
            f"{CLINIC_STREET}, {CLINIC_CITY}",
            f"Tél. {CLINIC_PHONE} · FINESS {CLINIC_FINESS}",
        ],
        right,
    )


def _practitioner_header(author: Practitioner, right: Sequence[str]) -> list[Flowable]:
    where = author.practice or f"{CLINIC_NAME}, {CLINIC_STREET}, {CLINIC_CITY}"
    phone = "04 78 " + author.rpps[3:5] + " " + author.rpps[5:7] + " " + author.rpps[7:9]
    return _org_header(
        author.formal_name,
        [
            author.specialty,
            where,
            f"Tél. {phone if author.practice else CLINIC_PHONE}",
            f"RPPS {author.rpps}",
        ],
        right,
    )


def _town(author: Practitioner) -> str:
    where = author.practice or CLINIC_CITY
    return where.rsplit(" ", 1)[-1]  # "69003 Lyon" -> "Lyon": letters are dated from a town


def _signature(author: Practitioner, note: str) -> KeepTogether:
    lines = [
        _p(author.formal_name, SIGNATURE),
        _p(author.specialty, SMALL),
        _p(note, SMALL),
    ]
    return KeepTogether(
        [Spacer(1, 4), _two_columns([Spacer(1, 1)], lines, left_width=FRAME_WIDTH * 0.55)]
    )


def _section(section: Section) -> list[Flowable]:
    flow: list[Flowable] = [_p(section.heading, HEADING)]
    for text in section.paragraphs:
        if section.as_list:
            flow.append(Paragraph(escape(text), BULLET, bulletText="•"))
        else:
            flow.append(_p(text))
    return flow


# Short lists that read well side by side, which keeps letters and summaries to one page.
_SIDE_BY_SIDE = ("Antécédents", "Traitement habituel")


def _sections(sections: Sequence[Section]) -> list[Flowable]:
    flow: list[Flowable] = []
    index = 0
    while index < len(sections):
        pair = tuple(s.heading for s in sections[index : index + 2])
        if pair == _SIDE_BY_SIDE:
            left, right = _section(sections[index]), _section(sections[index + 1])
            flow.append(_two_columns(left, right, left_width=FRAME_WIDTH * 0.45))
            index += 2
        else:
            flow += _section(sections[index])
            index += 1
    return flow


# --- one function per kind of payload ---------------------------------------------------------


def _lab(spec: DocumentSpec, report: LabReport, patient: PatientSpec) -> list[Flowable]:
    sampled, validated = report.sampled_at, report.validated_at
    flow = _org_header(
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
        _lines(
            ["Prescripteur", report.prescriber.formal_name, report.prescriber.specialty],
            bold_first=True,
        ),
        Spacer(1, 4),
        _p(f"Prélèvement : sang veineux, le {sampled:%d/%m/%Y} à {sampled:%H:%M}", SMALL),
    ]
    flow += [Spacer(1, 8), _patient_box(patient, spec.clinical_date, prescriber), Spacer(1, 10)]
    flow.append(_title_bar(report.title))
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
        flow.append(_p(f"Commentaire du biologiste : {report.comment}", COMMENT))
    flow.append(
        _p(
            "H : valeur supérieure aux valeurs de référence ; L : valeur inférieure. "
            "Les résultats sont à interpréter en fonction du contexte clinique.",
            SMALL,
        )
    )
    flow.append(
        _signature(
            report.biologist,
            f"Validé le {validated:%d/%m/%Y à %H:%M}",
        )
    )
    return flow


def _imaging(spec: DocumentSpec, report: ImagingReport, patient: PatientSpec) -> list[Flowable]:
    flow = _clinic_header(
        "Service d'imagerie médicale",
        [
            f"Examen n° {report.accession}",
            f"{report.modality} du {fr_date(spec.clinical_date)}",
        ],
    )
    prescriber = [
        Spacer(1, 4),
        _lines(
            ["Médecin demandeur", report.prescriber.formal_name, report.prescriber.specialty],
            bold_first=True,
        ),
        Spacer(1, 4),
        _lines(["Radiologue", report.radiologist.formal_name], bold_first=True),
    ]
    flow += [Spacer(1, 8), _patient_box(patient, spec.clinical_date, prescriber), Spacer(1, 10)]
    flow.append(_title_bar(report.title))
    flow += _sections(report.sections)
    conclusion = Table(
        [[[_p("Conclusion", HEADING), *(_p(line, BOLD) for line in report.conclusion)]]],
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
        _signature(
            report.radiologist,
            f"Compte rendu validé électroniquement le {fr_date(spec.clinical_date)}",
        )
    )
    return flow


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


def _letter(spec: DocumentSpec, letter: Letter, patient: PatientSpec) -> list[Flowable]:
    day = spec.clinical_date
    ident = (
        f"Patient{'e' if patient.sex == 'F' else ''} : {patient.family_name.upper()} "
        f"{patient.given_names}, né{'e' if patient.sex == 'F' else ''} le "
        f"{fr_date(patient.birth_date)} · IPP {patient.ipp}"
        + (f" · INS {_ins_text(patient.ins)}" if patient.ins else "")
    )
    if letter.service is not None and letter.admitted is not None:
        # A summary is longer than a letter: its header takes two lines, not an address block.
        flow = _clinic_header(
            f"Service de {letter.service.lower()}",
            [
                f"Séjour du {fr_date(letter.admitted)} au {fr_date(day)}",
                f"Rédigé par {letter.author.formal_name}",
                f"{_town(letter.author)}, le {fr_long_date(day)}",
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
        flow += [Spacer(1, 6), _title_bar("Compte rendu d'hospitalisation")]
    else:
        flow = _practitioner_header(letter.author, [])
        right = Paragraph(
            "<br/>".join(_recipient_block(letter.recipient, _town(letter.author), day)), BODY
        )
        flow += [
            Spacer(1, 10),
            _two_columns([Spacer(1, 1)], [right], left_width=FRAME_WIDTH * 0.55),
        ]
        flow += [
            Spacer(1, 12),
            Paragraph(
                f"<b>Objet :</b> {escape(letter.title)} — {escape(letter.subject_line)}", BODY
            ),
        ]
    flow += [Spacer(1, 2), _p(ident, SMALL), Spacer(1, 8)]
    flow += [_p(chunk) for chunk in letter.opening.split("\n\n")]
    flow += _sections(letter.sections)
    flow.append(Spacer(1, 6))
    flow += [_p(chunk) for chunk in letter.closing.split("\n\n")]
    flow.append(_signature(letter.author, "Signé électroniquement"))
    return flow


def _medication_lines(items: Sequence[Medication]) -> list[Flowable]:
    flow: list[Flowable] = []
    for item in items:
        text = f"<b>{escape(item.drug)}</b><br/>{escape(item.dosage)}"
        if item.duration:
            text += f"<br/>Pendant {escape(item.duration)}"
        flow.append(Paragraph(text, MEDICATION, bulletText="•"))
    return flow


def _zone(heading: str, flow: list[Flowable]) -> Table:
    zone = Table([[[_p(heading, ZONE), Spacer(1, 4), *flow]]], colWidths=[FRAME_WIDTH])
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


def _prescription(spec: DocumentSpec, rx: Prescription, patient: PatientSpec) -> list[Flowable]:
    day = spec.clinical_date
    flow = _practitioner_header(rx.prescriber, [f"{_town(rx.prescriber)}, le {fr_date(day)}"])
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
        _two_columns(
            [Spacer(1, 1)],
            [_lines(who, ADDRESSEE, bold_first=True)],
            left_width=FRAME_WIDTH * 0.55,
        ),
    ]
    flow += [Spacer(1, 12), _title_bar("Ordonnance"), Spacer(1, 10)]
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
                _medication_lines(rx.items) or [_p("Néant", SMALL)],
            )
        )
    else:
        flow += _medication_lines(rx.items)
    flow.append(Spacer(1, 8))
    if rx.renewals:
        flow.append(_p(f"Ordonnance à renouveler {rx.renewals} fois.", BOLD))
    flow.append(_signature(rx.prescriber, "Signé électroniquement"))
    return flow


def _certificate(spec: DocumentSpec, cert: Certificate, patient: PatientSpec) -> list[Flowable]:
    day = spec.clinical_date
    flow = _practitioner_header(cert.author, [])
    flow += [Spacer(1, 30), _title_bar(cert.title), Spacer(1, 18)]
    flow += [_p(text, CERTIFICATE) for text in cert.paragraphs]
    flow += [
        Spacer(1, 10),
        _p(
            f"Fait à {_town(cert.author)}, le {fr_long_date(day)}.",
            CERTIFICATE,
        ),
    ]
    flow.append(_signature(cert.author, "Signature et cachet du médecin"))
    return flow


# --- entry point ------------------------------------------------------------------------------


def _footer(spec: DocumentSpec, notice: str) -> Callable[[Canvas, SimpleDocTemplate], None]:
    def draw(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, 12 * mm, PAGE_WIDTH - MARGIN, 12 * mm)
        canvas.setFillColor(GREY)
        canvas.setFont("Helvetica", 7)
        canvas.drawString(MARGIN, 8 * mm, f"{spec.source_system} · {spec.external_id}")
        if notice:
            canvas.drawCentredString(PAGE_WIDTH / 2, 8 * mm, notice)
        canvas.drawRightString(PAGE_WIDTH - MARGIN, 8 * mm, f"Page {doc.page}")
        canvas.restoreState()

    return draw


def render_document(spec: DocumentSpec, patient: PatientSpec, *, fictitious: bool = True) -> bytes:
    """The PDF of `spec` for `patient`; byte-identical for equal arguments.

    `fictitious=False` leaves out the demo notice (footer and metadata): decoy documents must
    not tell a thief who got their bytes that they are decoys.
    """
    if spec.patient_ipp != patient.ipp:
        raise ValueError(
            f"document {spec.external_id} belongs to {spec.patient_ipp}, not {patient.ipp}"
        )
    payload = spec.payload
    if isinstance(payload, LabReport):
        flow = _lab(spec, payload, patient)
    elif isinstance(payload, ImagingReport):
        flow = _imaging(spec, payload, patient)
    elif isinstance(payload, Letter):
        flow = _letter(spec, payload, patient)
    elif isinstance(payload, Prescription):
        flow = _prescription(spec, payload, patient)
    else:
        flow = _certificate(spec, payload, patient)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=12 * mm,
        bottomMargin=17 * mm,
        title=f"{spec.title} — {patient.family_name.upper()} {patient.first_given_name}",
        author=spec.author,
        subject=FOOTER if fictitious else spec.title,
        creator="Vigie (démonstration)" if fictitious else spec.source_system,
        keywords="document fictif, démonstration" if fictitious else "",
        lang="fr-FR",
        invariant=1,
    )
    footer = _footer(spec, FOOTER if fictitious else "")
    doc.build(flow, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
