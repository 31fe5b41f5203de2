"""The demo documents' letterhead and typography: who the clinic and the laboratory are,
the colours, the page, and the paragraph styles `pdfs.py` lays the documents out with.
"""

from __future__ import annotations

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm

from vigie.demo.people import luhn_complete

FOOTER = "Document fictif — démonstration Vigie"

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

ACCENT = colors.HexColor("#1F4E79")
LIGHT = colors.HexColor("#E9EFF5")
RULE = colors.HexColor("#9FB3C8")
ALERT = colors.HexColor("#A61B1B")
GREY = colors.HexColor("#555555")

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 18 * mm
# The width flowables get: platypus frames keep 6 pt of padding on each side.
FRAME_WIDTH = PAGE_WIDTH - 2 * MARGIN - 12


def _style(name: str, **overrides: object) -> ParagraphStyle:
    base: dict[str, object] = {"fontName": "Helvetica", "fontSize": 9.5, "leading": 12.5}
    base.update(overrides)
    return ParagraphStyle(name, **base)


BODY = _style("body", spaceAfter=3)
SMALL = _style("small", fontSize=8, leading=10, textColor=GREY)
BOLD = _style("bold", fontName="Helvetica-Bold")
HEADING = _style(
    "heading",
    fontName="Helvetica-Bold",
    fontSize=10,
    textColor=ACCENT,
    spaceBefore=6,
    spaceAfter=2,
    keepWithNext=1,  # never a heading alone at the foot of a page
)
TITLE = _style(
    "title",
    fontName="Helvetica-Bold",
    fontSize=13,
    leading=16,
    textColor=ACCENT,
    alignment=TA_CENTER,
)
ORG = _style("org", fontName="Helvetica-Bold", fontSize=12.5, leading=15, textColor=ACCENT)
RIGHT = _style("right", alignment=TA_RIGHT)
BULLET = _style("bullet", leftIndent=10, bulletIndent=2, spaceAfter=1)
SIGNATURE = _style("signature", fontName="Helvetica-Oblique", fontSize=11, leading=14)
COMMENT = _style("comment", fontName="Helvetica-Oblique")
MEDICATION = _style("medication", leftIndent=12, bulletIndent=0, spaceAfter=7)
ZONE = _style("zone", fontName="Helvetica-Bold", fontSize=8, leading=10, textColor=ACCENT)
ADDRESSEE = _style("addressee", fontSize=11, leading=14)
CERTIFICATE = _style("certificate", fontSize=10.5, leading=15, spaceAfter=9)
