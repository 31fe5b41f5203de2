"""The benchmark's document: one real PDF of text pages, the same bytes every run.

nginx, Orthanc and Vigie all serve (and ingest) this very payload, so their figures compare
the servers and nothing else.
"""

from __future__ import annotations

import io
import random

DOC_SIZE = 200 * 1024


def _render_pages(pages: int) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    rng = random.Random(200)  # the same document every run
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=0)
    words = ["hémoglobine", "créatinine", "glycémie", "ferritine", "leucocytes", "plaquettes"]
    for _ in range(pages):
        for line in range(60):
            text = " ".join(rng.choice(words) for _ in range(8))
            pdf.drawString(40, 800 - line * 12.5, f"{text} {rng.random():.4f}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_pdf(size: int = DOC_SIZE) -> bytes:
    """A real PDF (reportlab) of text pages, padded with a trailing comment to exactly `size`."""
    per_page = len(_render_pages(2)) - len(_render_pages(1))
    data = _render_pages(max(1, int(size * 0.9) // per_page))
    if len(data) > size - 2:
        raise SystemExit(f"generated PDF is {len(data)} bytes, more than {size}")
    return data + b"%" + b"x" * (size - len(data) - 2) + b"\n"
