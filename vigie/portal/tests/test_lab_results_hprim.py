"""An HPRIM file dropped by a laboratory, as its patient's doctor reads it: the values on the
page and in the PDF are the values written in the file's RES lines, the file's part stays
downloadable as received (.hpr), and each patient of a multi-patient file sees only theirs.

The whole way: the real hot folder, parser, matcher and vault, then the portal's door.
"""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from vigie.accounts.models import User
from vigie.intake.folder import HotFolder
from vigie.intake.hprim import parse, patient_bytes
from vigie.intake.hprim.testing import TODAY, Report, hprim, make_nir
from vigie.portal.testing import relate
from vigie.records.models import Document, Patient
from vigie.records.testing import make_doctor

pytestmark = pytest.mark.django_db
SignedIn = Callable[[User], Client]

MARTIN = Report(
    lab=(
        "RES|Hémoglobine|HB|N|11,2|g/dl|12,0|16,0|L|F",
        "RES|Glycémie à jeun|GLY|N|1,32|g/l|0,70|1,10|H|F|7,33|mmol/l|3,89|6,11",
        "TEX|Contrôle conseillé à jeun strict.",
        "RES|Sérologie toxoplasmose IgG|TOXG|A|Positif||||A|F",
        "RES|Troponine|TROP|N|<0,5|ng/l||14||F",
    )
)
BERNARD = Report(
    family_name="BERNARD",
    given_name="Étienne",
    nir=make_nir("1720133063125"),
    birth_date="14/01/1972",
    lab=("RES|Ferritine|FERR|N|18|µg/l|20|200|L|F",),
)


def _text(response: object) -> str:
    body = response.content.decode()  # type: ignore[attr-defined]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


@pytest.fixture
def folder(tmp_path_factory: pytest.TempPathFactory, vault_home: Path) -> Iterator[HotFolder]:
    hot = HotFolder(
        tmp_path_factory.mktemp("drop"),
        tmp_path_factory.mktemp("outbox"),
        source_system="LABO-BROTTEAUX",
        settle=0,
        out=io.StringIO(),
        today=lambda: TODAY,
    )
    hot.prepare()
    yield hot
    hot.close()


def _patient(family: str, given: str, nir: str, born: datetime.date, sex: str) -> Patient:
    return Patient.objects.create(
        ipp=f"IPP-{family}", ins=nir, family_name=family, given_names=given, birth_date=born,
        sex=sex,
    )  # fmt: skip


def test_a_doctor_reads_the_values_the_laboratory_sent(
    folder: HotFolder, signed_in: SignedIn
) -> None:
    martin = _patient("MARTIN", "Hélène", MARTIN.nir, datetime.date(1985, 4, 3), "F")
    bernard = _patient("BERNARD", "Étienne", BERNARD.nir, datetime.date(1972, 1, 14), "M")
    doctor = make_doctor("dr.dubois")
    relate(doctor, martin)
    raw = hprim([MARTIN, BERNARD])
    (folder.path / "CR_20261125.hpr").write_bytes(raw)
    (outcome,), _settling = folder.scan()
    assert outcome.status == "stored"
    mine = Document.objects.get(patient=martin)
    theirs = Document.objects.get(patient=bernard)
    client = signed_in(doctor)

    page = client.get(reverse("portal:document_viewer", args=[mine.pk]))
    assert page.status_code == 200
    text = _text(page)
    for sent in (
        "Hémoglobine", "11,2", "g/dl", "12,0 - 16,0",  # as written, decimal commas kept
        "Glycémie à jeun", "1,32", "0,70 - 1,10", "7,33 mmol/l",
        "Contrôle conseillé à jeun strict.",
        "Sérologie toxoplasmose IgG", "Positif",
        "Troponine", "&lt;0,5", "&lt; 14",
        "Laboratoire des Brotteaux",
    ):  # fmt: skip
        assert sent in text or sent in page.content.decode(), sent
    # Abnormal values are said in words, not colour alone.
    assert page.content.decode().count('<tr class="lab-abnormal">') == 3
    assert "Ferritine" not in text  # the other patient's value, in the same file

    pdf = client.get(reverse("portal:document_download", args=[mine.pk]))
    assert pdf["Content-Type"] == "application/pdf"
    words = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    for sent in ("Hémoglobine", "11,2", "Positif", "Troponine"):
        assert sent in words, sent
    assert "Ferritine" not in words

    received = client.get(reverse("portal:document_content", args=[mine.pk]))
    assert received["Content-Disposition"].endswith('.hpr"')
    parsed = parse(raw, today=TODAY)
    content = b"".join(received.streaming_content)  # type: ignore[attr-defined]
    assert content == patient_bytes(raw, parsed, parsed.patients[0])

    # The other patient's document is not this doctor's to read.
    assert client.get(reverse("portal:document_viewer", args=[theirs.pk])).status_code == 404


def test_the_history_shows_an_hprim_value_beside_its_earlier_ones(
    folder: HotFolder, signed_in: SignedIn
) -> None:
    martin = _patient("MARTIN", "Hélène", MARTIN.nir, datetime.date(1985, 4, 3), "F")
    doctor = make_doctor("dr.dubois")
    relate(doctor, martin)
    earlier = Report(
        date="02/10/2026",
        reference="CR240001",
        lab=("RES|Hémoglobine|HB|N|12,9|g/dl|12,0|16,0||F",),
    )
    for name, report in (("a.hpr", earlier), ("b.hpr", MARTIN)):
        (folder.path / name).write_bytes(hprim([report]))
        folder.scan()
    page = signed_in(doctor).get(reverse("portal:patient_results", args=[martin.public_id]))
    assert page.status_code == 200
    text = _text(page)
    assert "Hémoglobine" in text
    assert "11,2" in text
    assert "12,9" in text
