"""Builders for the hot folder's tests (plain code, no pytest: see tests/test_test_helpers.py)."""

from __future__ import annotations

import io
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from vigie.records.models import Patient


def another_pdf(text: str) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    page.drawString(72, 800, text)
    page.showPage()
    page.save()
    return buffer.getvalue()


def sidecar(patient: Patient | None = None, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "patient": {"ins": patient.ins, "family_name": patient.family_name}
        if patient
        else {"ipp": "UNKNOWN9", "ipp_source": "LABO-CENTRAL", "family_name": "INCONNU"},
        "document": {
            "kind": "lab_result",
            "title": "Numération formule sanguine",
            "clinical_date": "2026-11-28",
            "author": "Dr Biologiste",
        },
        "source_system": "LABO-CENTRAL",
    }
    for key, value in changes.items():
        if key in ("kind", "title", "clinical_date", "author"):
            data["document"][key] = value
        else:
            data[key] = value
    return data
