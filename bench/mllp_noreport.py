"""Benchmark build ONLY: `vigie intake mllp` with the reportlab rendering of ORUs swapped out.

Issue 20 replaces the PDF that intake draws from every ORU without an embedded PDF (about
4.4 ms of reportlab a message) by the message itself, sealed with its parsed observations.
Until that conversion lands, the MLLP throughput stage measures the server loop and the group
commit with this entry point: the same command, but `render_report` answers one fixed,
one-page PDF made once at start (so each message still stores a real, inspected PDF of the
size a short report has). It exists under bench/, is never installed with the package, and
the product has no setting that changes the conversion.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from reportlab.pdfgen.canvas import Canvas


def _fixed_pdf() -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=1)
    canvas.drawString(72, 720, "Bilan sanguin (benchmark: fixed report)")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def main() -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
    from vigie.startup import preflight, restrict_umask

    restrict_umask()
    preflight()  # Django set up, so the handler (and its models) can be imported
    from vigie.cli import main as vigie_main
    from vigie.intake.hl7 import handler

    pdf = _fixed_pdf()

    def fixed_report(*args: Any, **kwargs: Any) -> bytes:
        return pdf

    setattr(handler, "render_report", fixed_report)  # noqa: B010 - a bench-only swap, on purpose
    vigie_main(sys.argv[1:])


if __name__ == "__main__":
    main()
