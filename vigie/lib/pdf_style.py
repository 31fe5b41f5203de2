"""Vigie's one PDF house style: the page, the colours, the paragraph styles and the letterhead
pieces every PDF Vigie draws is laid out with (the synthetic documents of the demo and the
decoys, the lab reports drawn from HL7 ORU messages).

One module so the documents a physician reads side by side look alike whatever drew them, and
so a change of typography is made once. Only reportlab's built-in Helvetica is used (no font
files to ship); it is encoded as Windows-1252, which covers French accents. Who a letterhead
names is the caller's business: nothing here is an institution.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

ACCENT = colors.HexColor("#1F4E79")
LIGHT = colors.HexColor("#E9EFF5")
RULE = colors.HexColor("#9FB3C8")
ALERT = colors.HexColor("#A61B1B")
GREY = colors.HexColor("#555555")

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 18 * mm
# The width flowables get: platypus frames keep 6 pt of padding on each side.
FRAME_WIDTH = PAGE_WIDTH - 2 * MARGIN - 12


def style(name: str, **overrides: object) -> ParagraphStyle:
    """A paragraph style of the house: Helvetica 9.5 on 12.5 unless `overrides` say else."""
    base: dict[str, object] = {"fontName": "Helvetica", "fontSize": 9.5, "leading": 12.5}
    base.update(overrides)
    return ParagraphStyle(name, **base)


BODY = style("body", spaceAfter=3)
SMALL = style("small", fontSize=8, leading=10, textColor=GREY)
BOLD = style("bold", fontName="Helvetica-Bold")
HEADING = style(
    "heading",
    fontName="Helvetica-Bold",
    fontSize=10,
    textColor=ACCENT,
    spaceBefore=6,
    spaceAfter=2,
    keepWithNext=1,  # never a heading alone at the foot of a page
)
TITLE = style(
    "title",
    fontName="Helvetica-Bold",
    fontSize=13,
    leading=16,
    textColor=ACCENT,
    alignment=TA_CENTER,
)
ORG = style("org", fontName="Helvetica-Bold", fontSize=12.5, leading=15, textColor=ACCENT)
RIGHT = style("right", alignment=TA_RIGHT)
BULLET = style("bullet", leftIndent=10, bulletIndent=2, spaceAfter=1)
SIGNATURE = style("signature", fontName="Helvetica-Oblique", fontSize=11, leading=14)
COMMENT = style("comment", fontName="Helvetica-Oblique")
MEDICATION = style("medication", leftIndent=12, bulletIndent=0, spaceAfter=7)
ZONE = style("zone", fontName="Helvetica-Bold", fontSize=8, leading=10, textColor=ACCENT)
ADDRESSEE = style("addressee", fontSize=11, leading=14)
CERTIFICATE = style("certificate", fontSize=10.5, leading=15, spaceAfter=9)
# Table cells, for results laid out in a table of paragraphs.
CELL = style("cell", fontSize=9, leading=11)
CELL_ALERT = style("cell_alert", fontSize=9, leading=11, fontName="Helvetica-Bold", textColor=ALERT)
# The header row and the rules of a results table.
RESULTS_HEADER: list[tuple[object, ...]] = [
    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
    ("BACKGROUND", (0, 0), (-1, 0), LIGHT),
    ("LINEBELOW", (0, 0), (-1, 0), 0.8, ACCENT),
    ("TOPPADDING", (0, 0), (-1, -1), 2.2),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 2.2),
]


def paragraph(text: str, style: ParagraphStyle = BODY) -> Paragraph:
    """A paragraph of plain text: escaped, since document text may contain "<" or "&"."""
    return Paragraph(escape(text), style)


def lines(
    texts: Sequence[str], style: ParagraphStyle = BODY, *, bold_first: bool = False
) -> Paragraph:
    """Lines of plain text in one paragraph, the first one bold if asked (a name, a title)."""
    parts = [escape(line) for line in texts]
    if bold_first and parts:
        parts[0] = f"<b>{parts[0]}</b>"
    return Paragraph("<br/>".join(parts), style)


def two_columns(
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


def rule(width: float = FRAME_WIDTH, thickness: float = 1.2) -> Table:
    line = Table([[""]], colWidths=[width], rowHeights=[2])
    line.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), thickness, ACCENT)]))
    return line


def title_bar(text: str) -> Table:
    """The document's title, capitals between two rules."""
    bar = Table([[paragraph(text.upper(), TITLE)]], colWidths=[FRAME_WIDTH])
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


def letterhead(name: str, details: Sequence[str], right: Sequence[str]) -> list[Flowable]:
    """Who issues the document (name, then address lines) on the left, the document's
    references on the right (first line bold), a rule below."""
    left = [paragraph(name, ORG), lines(details, SMALL)]
    return [
        two_columns(left, [lines(right, RIGHT, bold_first=True)], left_width=FRAME_WIDTH * 0.58),
        Spacer(1, 3),
        rule(),
    ]


def boxed(flow: Sequence[Flowable], width: float, *, padding: float = 6) -> Table:
    """Flowables framed on the light background: the patient, a conclusion."""
    box = Table([[list(flow)]], colWidths=[width])
    box.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.6, RULE),
                ("BACKGROUND", (0, 0), (-1, -1), LIGHT),
                ("LEFTPADDING", (0, 0), (-1, -1), padding),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    return box


Footer = Callable[[Canvas, SimpleDocTemplate], None]


def footer(left: str, notice: str = "") -> Footer:
    """Every page's foot: where the document comes from, an optional notice, the page."""

    def draw(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, 12 * mm, PAGE_WIDTH - MARGIN, 12 * mm)
        canvas.setFillColor(GREY)
        canvas.setFont("Helvetica", 7)
        canvas.drawString(MARGIN, 8 * mm, left)
        if notice:
            canvas.drawCentredString(PAGE_WIDTH / 2, 8 * mm, notice)
        canvas.drawRightString(PAGE_WIDTH - MARGIN, 8 * mm, f"Page {doc.page}")
        canvas.restoreState()

    return draw


def build(flow: list[Flowable], foot: Footer, **metadata: str) -> bytes:
    """The PDF of `flow` on the house page; byte-identical for equal arguments: reportlab's
    `invariant` mode fixes the creation date and document id it would take from the clock.
    `metadata`: title, author, subject, creator, keywords."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=12 * mm,
        bottomMargin=17 * mm,
        lang="fr-FR",
        invariant=1,
        **metadata,
    )
    doc.build(flow, onFirstPage=foot, onLaterPages=foot)
    return buffer.getvalue()
