"""A lab document read as a table, downloaded as a PDF, and a patient's history of results."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from vigie.accounts.models import User
from vigie.audit.log import AuditUnavailable
from vigie.audit.models import AuditEvent
from vigie.portal.lab_history import build_history
from vigie.portal.results_pdf import render_results
from vigie.portal.testing import relate
from vigie.records.models import Document
from vigie.records.results import Attachment, Observation, ResultGroup, ResultSet
from vigie.records.testing import (
    lab_report_pdf,
    make_doctor,
    make_document,
    make_lab_document,
    make_patient,
    sample_results,
)

pytestmark = pytest.mark.django_db
SignedIn = Callable[[User], Client]


def _scene() -> tuple[User, Document]:
    doctor = make_doctor()
    patient = make_patient("MARTINEAU")
    relate(doctor, patient)
    return doctor, make_lab_document(patient, sample_results())


def _text(response: object) -> str:
    body = response.content.decode()  # type: ignore[attr-defined]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_it_shows_a_lab_document_as_a_table(signed_in: SignedIn) -> None:
    doctor, document = _scene()
    response = signed_in(doctor).get(reverse("portal:document_viewer", args=[document.pk]))
    assert response.status_code == 200
    text = _text(response)
    for expected in ("Potassium", "5.9", "mmol/L", "3.5-5.0", "Créatinine", "µmol/L", "45-90"):
        assert expected in text, expected
    assert "Limpide" in text
    assert "Prélèvement à jeun" in text
    # The flag is said in words and a symbol, not only in colour.
    assert "↑ H (haut)" in text or "↑ H (high)" in text
    assert '<tr class="lab-abnormal">' in response.content.decode()
    # Read through the door: the read is audited, with the part it disclosed.
    event = AuditEvent.objects.filter(action="document.read").latest("seq")
    assert event.document_id == document.pk
    assert event.extra["part"] == "results"


def test_a_document_without_results_is_shown_as_before(signed_in: SignedIn) -> None:
    doctor = make_doctor()
    patient = make_patient()
    relate(doctor, patient)
    pdf = lab_report_pdf()
    document = make_document(patient, pdf)
    client = signed_in(doctor)
    response = client.get(reverse("portal:document_viewer", args=[document.pk]))
    assert response.status_code == 200
    assert b"viewer-frame" in response.content
    assert b"lab-table" not in response.content
    assert not AuditEvent.objects.filter(action="document.read").exists()
    download = client.get(reverse("portal:document_download", args=[document.pk]))
    assert b"".join(download.streaming_content) == pdf  # type: ignore[attr-defined]
    history = client.get(reverse("portal:patient_results", args=[patient.public_id]))
    assert history.status_code == 200


def test_it_downloads_a_pdf_of_the_same_values(signed_in: SignedIn) -> None:
    doctor, document = _scene()
    response = signed_in(doctor).get(reverse("portal:document_download", args=[document.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment")
    text = _pdf_text(response.content)
    for expected in ("Potassium", "5.9", "mmol/L", "3.5-5.0", "haut", "Créatinine", "Limpide"):
        assert expected in text, expected
    assert "MARTINEAU" in text
    assert AuditEvent.objects.filter(action="document.download", document_id=document.pk).exists()


def test_the_message_as_received_stays_downloadable(signed_in: SignedIn) -> None:
    doctor, document = _scene()
    response = signed_in(doctor).get(reverse("portal:document_content", args=[document.pk]))
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Disposition"].endswith('.hl7"')
    assert b"".join(response.streaming_content).startswith(b"MSH|")  # type: ignore[attr-defined]


def test_the_embedded_pdf_is_viewable_beside_the_values(signed_in: SignedIn) -> None:
    doctor = make_doctor()
    patient = make_patient()
    relate(doctor, patient)
    pdf = lab_report_pdf()
    results = sample_results().with_attachment(Attachment.of("application/pdf", pdf))
    document = make_lab_document(patient, results, attachment=pdf)
    client = signed_in(doctor)
    page = client.get(reverse("portal:document_viewer", args=[document.pk]))
    assert reverse("portal:document_attachment", args=[document.pk]).encode() in page.content
    shown = client.get(reverse("portal:document_attachment", args=[document.pk]))
    assert shown.status_code == 200
    assert shown.content == pdf
    assert shown["Content-Disposition"].startswith("inline")
    saved = client.get(reverse("portal:document_attachment_download", args=[document.pk]))
    assert saved["Content-Disposition"].startswith("attachment")
    assert saved.content == pdf


def test_attack_an_outsider_gets_the_same_404_for_values_history_and_attachment(
    signed_in: SignedIn,
) -> None:
    _doctor, document = _scene()
    outsider = signed_in(make_doctor("dr.outsider"))
    for name, arg in (
        ("portal:document_viewer", document.pk),
        ("portal:document_download", document.pk),
        ("portal:document_attachment", document.pk),
        ("portal:document_attachment_download", document.pk),
        ("portal:patient_results", document.patient.public_id),
    ):
        response = outsider.get(reverse(name, args=[arg]))
        assert response.status_code == 404, name
        assert b"Potassium" not in response.content
        assert b"5.9" not in response.content
    unknown = outsider.get(reverse("portal:document_attachment", args=["x" * 32]))
    assert unknown.status_code == 404
    assert not AuditEvent.objects.filter(action__in=["document.read", "document.download"])


def test_a_lab_document_without_attachment_answers_404_for_one(signed_in: SignedIn) -> None:
    doctor, document = _scene()
    response = signed_in(doctor).get(reverse("portal:document_attachment", args=[document.pk]))
    assert response.status_code == 404


def _history_scene() -> tuple[User, list[Document]]:
    doctor = make_doctor()
    patient = make_patient("LEGRAND")
    relate(doctor, patient)
    old = make_lab_document(
        patient, sample_results("4.1", flag="", when=datetime(2025, 3, 1, 8, 0))
    )
    middle = make_lab_document(
        patient, sample_results("4.6", flag="", when=datetime(2025, 9, 1, 8, 0))
    )
    newest = make_lab_document(
        patient, sample_results("6.2", flag="HH", when=datetime(2026, 11, 2, 8, 0))
    )
    return doctor, [newest, middle, old]


def test_the_history_shows_every_analyte_newest_first_with_abnormal_marked(
    signed_in: SignedIn,
) -> None:
    doctor, documents = _history_scene()
    patient = documents[0].patient
    response = signed_in(doctor).get(reverse("portal:patient_results", args=[patient.public_id]))
    assert response.status_code == 200
    body = response.content.decode()
    text = _text(response)
    # Columns newest first, each a link to its report.
    links = [body.index(reverse("portal:document_viewer", args=[d.pk])) for d in documents]
    assert links == sorted(links)
    # The potassium row: the abnormal value flagged (words, symbol, marked cell), and the
    # earlier values after it, in order.
    cells = re.findall(r'<span class="lab-value">([^<]*)</span>', body)
    # Rows by analyte name (Aspect, Créatinine, Potassium), three reports each.
    assert cells == ["Limpide"] * 3 + ["78"] * 3 + ["6.2", "4.6", "4.1"]
    assert "⇈ HH" in text
    assert body.count('class="lab-cell lab-abnormal"') == 1
    # One chart per numeric analyte, drawn on the server: SVG, no script of its own (the
    # page's only scripts are the site's static files, e.g. the idle warning).
    assert body.count("<svg") == 2
    scripts = re.findall(r"<script[^>]*>", body)
    assert all(re.fullmatch(r'<script src="/static/vigie/[a-z_]+\.js" defer>', s) for s in scripts)
    assert "<svg" not in "".join(re.findall(r"<script.*?</script>", body, re.S))
    assert 'role="img"' in body


def test_opening_the_history_is_audited_as_a_read_of_every_document(
    signed_in: SignedIn,
) -> None:
    doctor, documents = _history_scene()
    signed_in(doctor).get(reverse("portal:patient_results", args=[documents[0].patient.public_id]))
    read = set(
        AuditEvent.objects.filter(action="document.read").values_list("document_id", flat=True)
    )
    assert read == {d.pk for d in documents}


def test_attack_the_history_discloses_nothing_when_the_audit_cannot_be_written(
    signed_in: SignedIn,
) -> None:
    doctor, documents = _history_scene()
    client = signed_in(doctor)
    url = reverse("portal:patient_results", args=[documents[0].patient.public_id])
    with mock.patch(
        "vigie.portal.door.record", side_effect=AuditUnavailable("audit log unavailable")
    ):
        response = client.get(url)
    assert response.status_code == 503
    assert b"6.2" not in response.content
    assert b"Potassium" not in response.content
    with (
        mock.patch(
            "vigie.portal.door.open_results", side_effect=AssertionError("decrypted unaudited")
        ),
        mock.patch("vigie.portal.door.record", side_effect=AuditUnavailable("down")),
    ):
        assert client.get(url).status_code == 503


def _obs(value: str, unit: str, reference: str, flag: str = "") -> Observation:
    return Observation.from_text(
        code="2160-0", code_system="LN", label="Créatinine", value=value, unit=unit,
        reference_range=reference, flag=flag,
    )  # fmt: skip


def _set(when: datetime, *observations: Observation) -> ResultSet:
    return ResultSet(
        source="LAB",
        groups=(ResultGroup(code="B", label="Bilan", observed_at=when, observations=observations),),
    )


def test_history_compares_a_unit_only_with_itself_and_shows_a_changed_range() -> None:
    patient = make_patient()
    found = [
        (make_document(patient), _set(datetime(2026, 3, 1), _obs("80", "µmol/L", "45-90"))),
        (make_document(patient), _set(datetime(2025, 3, 1), _obs("0.9", "mg/dL", "0.5-1.0"))),
        (make_document(patient), _set(datetime(2024, 3, 1), _obs("70", "µmol/L", "50-100"))),
        (make_document(patient), _set(datetime(2023, 3, 1), _obs("75", "µmol/L", "45-90"))),
    ]
    history = build_history(found)
    assert [(r.unit, r.other_units) for r in history.rows] == [
        ("mg/dL", True),
        ("µmol/L", True),
    ]
    micromolar = history.rows[1]
    values = [c.observation.value if c else None for c in micromolar.cells]
    assert values == ["80", None, "70", "75"]
    changed = [c.range_changed if c else None for c in micromolar.cells]
    assert changed == [False, None, True, False]
    # The chart draws µmol/L values only: three points, never the mg/dL one.
    assert micromolar.chart is not None
    assert len(micromolar.chart.points) == 3
    assert history.rows[0].chart is None  # a single value is no trend


def test_the_changed_range_is_shown_in_the_page(signed_in: SignedIn) -> None:
    doctor = make_doctor()
    patient = make_patient()
    relate(doctor, patient)
    make_lab_document(patient, _set(datetime(2024, 1, 1), _obs("70", "µmol/L", "50-100")))
    make_lab_document(patient, _set(datetime(2026, 1, 1), _obs("80", "µmol/L", "45-90")))
    text = _text(signed_in(doctor).get(reverse("portal:patient_results", args=[patient.public_id])))
    assert "50-100" in text
    assert "45-90" in text


# -- the PDF drawn from the values ---------------------------------------------------------


def test_the_pdf_highlights_abnormal_values_only() -> None:
    patient = make_patient()
    document = make_document(patient)

    def content(flag: str) -> bytes:
        pdf = render_results(document, _set(datetime(2026, 1, 1), _obs("9", "µmol/L", "", flag)))
        stream = PdfReader(io.BytesIO(pdf)).pages[0].get_contents()
        assert stream is not None
        return stream.get_data()

    red = b".65098 .105882 .105882 rg"  # ALERT (#A61B1B) as reportlab writes it
    assert red in content("L")
    assert red in content("HH")
    assert red not in content("N")


def test_a_value_too_long_for_a_cell_is_printed_in_full() -> None:
    long_text = "Frottis : " + " ".join(f"mot{i}" for i in range(1500))
    observation = replace(_obs("x", "", ""), value=long_text)
    document = make_document(make_patient())
    text = _pdf_text(render_results(document, _set(datetime(2026, 1, 1), observation)))
    assert "mot1499" in text
    assert "mot750" in text


def test_rendering_is_deterministic_and_survives_odd_characters() -> None:
    document = make_document(make_patient())
    results = _set(datetime(2026, 1, 1), replace(_obs("\U0001f600 ok", "", ""), label="Tab 伟"))
    first = render_results(document, results)
    assert first == render_results(document, results)
    assert "Tab ?" in _pdf_text(first)


def test_a_damaged_report_is_left_out_said_and_alerted_not_a_blank_history(
    signed_in: SignedIn,
) -> None:
    from vigie.alerts.models import Alert
    from vigie.records.models import SealedResults, results_label

    doctor, documents = _history_scene()
    damaged = documents[1]
    row = SealedResults.objects.get(pk=results_label(damaged.pk))
    flipped = bytearray(bytes(row.results))
    flipped[-1] ^= 1
    SealedResults.objects.filter(pk=row.pk).update(results=bytes(flipped))
    response = signed_in(doctor).get(
        reverse("portal:patient_results", args=[documents[0].patient.public_id])
    )
    assert response.status_code == 200
    cells = re.findall(r'<span class="lab-value">([^<]*)</span>', response.content.decode())
    assert "6.2" in cells
    assert "4.1" in cells
    assert "4.6" not in cells
    assert b'class="warning-banner" role="alert"' in response.content
    assert Alert.objects.filter(kind="vault.integrity", dedupe_key__endswith=damaged.pk).exists()
