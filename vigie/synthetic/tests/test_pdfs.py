"""The demo PDFs: real, readable, one page, fictitious on their face, repeatable."""

import dataclasses
import io
import re

import pytest
from pypdf import PdfReader

from vigie.synthetic import payloads
from vigie.synthetic.clinic import KINDS, build_clinic
from vigie.synthetic.pdf import render_document
from vigie.synthetic.pdf.letterhead import FICTITIOUS_NOTICE

CBC_ANALYTES = (
    "Hématies",
    "Hémoglobine",
    "Hématocrite",
    "VGM",
    "TCMH",
    "CCMH",
    "Leucocytes",
    "Polynucléaires neutrophiles",
    "Polynucléaires éosinophiles",
    "Polynucléaires basophiles",
    "Lymphocytes",
    "Monocytes",
    "Plaquettes",
)


@pytest.fixture(scope="module")
def clinic():
    return build_clinic()


def _read(pdf: bytes) -> tuple[int, str]:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def _render(clinic, document):
    return render_document(document, clinic.patient(document.patient_ipp))


@pytest.mark.parametrize("kind", KINDS)
def test_it_renders_every_kind_as_a_readable_pdf(clinic, kind):
    document = next(d for d in clinic.documents if d.kind == kind)
    pages, text = _read(_render(clinic, document))
    assert pages >= 1
    assert clinic.patient(document.patient_ipp).family_name.upper() in text
    assert FICTITIOUS_NOTICE in text


def test_it_renders_a_complete_blood_count_with_reference_ranges(clinic):
    document = next(d for d in clinic.documents if d.title == "Numération formule sanguine")
    pages, text = _read(_render(clinic, document))
    assert pages == 1
    for analyte in CBC_ANALYTES:
        assert analyte in text
    # Haemoglobin's line carries its value, unit and range, e.g. "14,7 g/dL 13,0 - 17,0".
    assert re.search(r"Hémoglobine\s+\d+,\d\s+g/dL\s+1\d,\d - 1\d,\d", text)
    assert "Prescripteur" in text
    assert "Dossier n°" in text


def test_it_renders_every_template_and_each_fits_one_page(clinic):
    seen = set()
    for document in clinic.documents:
        if (document.kind, document.title) in seen:
            continue
        seen.add((document.kind, document.title))
        patient = clinic.patient(document.patient_ipp)
        pages, text = _read(render_document(document, patient))
        assert pages == 1, document.title
        assert patient.family_name.upper() in text
        assert document.external_id in text
    assert len(seen) >= 15


@pytest.mark.slow
def test_it_renders_every_document_of_the_clinic(clinic):
    # What `vigie demo` does: no document may fail to render (about 5 s for 320 PDFs).
    for document in clinic.documents:
        assert _render(clinic, document).rstrip().endswith(b"%%EOF")


def test_it_renders_byte_identical_pdfs_for_the_same_seed(clinic):
    again = build_clinic()
    for kind in KINDS:
        first = next(d for d in clinic.documents if d.kind == kind)
        second = next(d for d in again.documents if d.kind == kind)
        assert _render(clinic, first) == _render(again, second)


def test_it_refuses_to_render_a_document_for_another_patient(clinic):
    document = clinic.documents[0]
    stranger = next(p for p in clinic.patients if p.ipp != document.patient_ipp)
    with pytest.raises(ValueError, match="belongs to"):
        render_document(document, stranger)


def test_it_flags_values_outside_the_reference_range():
    assert payloads.LabRow("Potassium", 5.6, "mmol/L", 3.5, 5.1, 1).flag == "H"
    assert payloads.LabRow("Potassium", 3.1, "mmol/L", 3.5, 5.1, 1).flag == "L"
    assert payloads.LabRow("Potassium", 4.2, "mmol/L", 3.5, 5.1, 1).flag == ""
    assert payloads.LabRow("CRP", 2.0, "mg/L", None, 5, 1).range_text == "< 5,0"


def test_it_generates_some_abnormal_results_but_mostly_normal_ones(clinic):
    rows = [
        row
        for d in clinic.documents
        if isinstance(d.payload, payloads.LabReport)
        for section in d.payload.sections
        for row in section.rows
    ]
    flagged = sum(bool(row.flag) for row in rows)
    assert 0.01 < flagged / len(rows) < 0.15


def test_it_computes_blood_indices_from_one_another(clinic):
    for document in clinic.documents:
        if document.title != "Numération formule sanguine":
            continue
        rows = {r.label: r.value for s in document.payload.sections for r in s.rows}
        assert rows["Hématocrite"] == pytest.approx(rows["Hématies"] * rows["VGM"] / 10)
        assert rows["TCMH"] == pytest.approx(rows["Hémoglobine"] * 10 / rows["Hématies"])
        differential = sum(
            r.percent for s in document.payload.sections for r in s.rows if r.percent
        )
        assert differential == pytest.approx(100)


def _strings(value):
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _strings(getattr(value, field.name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_it_writes_only_characters_the_builtin_helvetica_can_draw(clinic):
    # reportlab's standard fonts are Windows-1252: anything else would print as a black box.
    for value in (*clinic.patients, *clinic.documents):
        for text in _strings(value):
            text.encode("cp1252")


def test_it_never_discharges_a_penicillin_allergic_patient_with_amoxicillin(clinic):
    for document in clinic.documents:
        if not isinstance(document.payload, payloads.Letter):
            continue
        texts = {s.heading: " ".join(s.paragraphs) for s in document.payload.sections}
        if "Pénicillines" in texts.get("Antécédents", ""):
            assert "Amoxicilline" not in texts.get("Traitement de sortie", "")
