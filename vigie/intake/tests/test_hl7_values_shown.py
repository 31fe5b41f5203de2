"""The values a physician reads are the values the lab sent (issue 20, HL7 channel).

An ORU^R01 with NM, ST, TX, CE and SN values, repeated OBX, several OBR and NTE comments goes
in through the handler; the document's page, its PDF and the patient's history must show
every one of them as sent, with its unit, range and flag.
"""

from __future__ import annotations

import html
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from vigie.accounts.testing import log_in
from vigie.intake.hl7.handler import handle
from vigie.intake.hl7.testing import Oru
from vigie.intake.models import MllpSender
from vigie.portal.testing import relate
from vigie.records.models import Document
from vigie.records.results_store import open_results
from vigie.records.testing import make_doctor, make_patient

pytestmark = pytest.mark.django_db

SEGMENTS = [
    "OBX|1|NM|718-7^Hémoglobine^LN||9.1|g/dL|12.0-16.0|L|||F|||202611020830",
    "NTE|1||Contrôlé sur un second prélèvement",
    "OBX|2|NM|777-3^Plaquettes^LN||612|10*9/L|150-400|HH|||F",
    "OBX|3|SN|5130-0^D-dimères^LN||<^0.5|mg/L|<0.5||||F",
    "OBX|4|SN|2345-7^Glucose^LN||^5.4|mmol/L|3.9-5.8|N|||F",
    "OBX|5|CE|882-1^Groupe ABO^LN||A^Groupe A^L||||||F",
    "OBX|6|ST|GERM^Germe^BIOLOC||Escherichia coli|||A|||P",
    "OBX|7|TX|8251-1^Commentaire^LN||Contrôle conseillé\\.br\\dans 15 jours||||||F",
    "OBX|8|NM|2951-2^Sodium^LN||139|mmol/L|136-145|N|||F",
    "OBR|2|CMD43|LAB43|IONO^Ionogramme^L|||202611020900",
    "OBX|1|NM|2823-3^Potassium^LN||5.9|mmol/L|3.5-5.0|H|||F",
    "OBX|2|NM|2823-3^Potassium^LN||5.8|mmol/L|3.5-5.0|H|||C",
]
SENT = [
    # label, value as shown, unit, range, flag
    ("Hémoglobine", "9.1", "g/dL", "12.0-16.0", "L"),
    ("Plaquettes", "612", "10*9/L", "150-400", "HH"),
    ("D-dimères", "<0.5", "mg/L", "<0.5", ""),
    ("Glucose", "5.4", "mmol/L", "3.9-5.8", "N"),
    ("Groupe ABO", "Groupe A", "", "", ""),
    ("Germe", "Escherichia coli", "", "", "A"),
    ("Commentaire", "Contrôle conseillé\ndans 15 jours", "", "", ""),
    ("Sodium", "139", "mmol/L", "136-145", "N"),
    ("Potassium", "5.9", "mmol/L", "3.5-5.0", "H"),
    ("Potassium", "5.8", "mmol/L", "3.5-5.0", "H"),
]


@pytest.fixture
def stored(vault_home: Path, settings: object) -> tuple[Client, Document]:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False  # type: ignore[attr-defined]
    settings.SECURE_SSL_REDIRECT = False  # type: ignore[attr-defined]
    patient = make_patient("DURAND")
    sender, _ = MllpSender.objects.get_or_create(
        name="BIOMED", defaults={"source_system": "BIOMED"}
    )
    reply = handle(
        Oru(ipp="", ins=patient.ins or "", observations=SEGMENTS).encode(),
        sender=sender,
        local_authority="",
    )
    assert reply.code == "AA", reply.reason
    document = Document.objects.get(pk=reply.document_id)
    doctor = make_doctor()
    relate(doctor, document.patient)
    client = Client()
    log_in(client, doctor)
    return client, document


def test_the_stored_values_are_the_values_sent(stored: tuple[Client, Document]) -> None:
    _client, document = stored
    results = open_results(document)
    assert results is not None
    assert [g.label for g in results.groups] == ["Numération formule sanguine", "Ionogramme"]
    got = [(o.label, o.value, o.unit, o.reference_range, o.flag) for o in results.observations]
    assert got == SENT
    by_label = {o.label: o for o in reversed(results.observations)}
    assert by_label["Hémoglobine"].numeric == Decimal("9.1")
    assert (by_label["Hémoglobine"].low, by_label["Hémoglobine"].high) == (
        Decimal("12.0"),
        Decimal("16.0"),
    )
    assert by_label["Hémoglobine"].code_system == "LN"
    assert by_label["Hémoglobine"].comments == ("Contrôlé sur un second prélèvement",)
    assert by_label["Glucose"].numeric == Decimal("5.4")  # SN without comparator
    assert by_label["D-dimères"].numeric is None  # "<0.5" stays text
    assert by_label["Groupe ABO"].numeric is None
    assert (by_label["Germe"].code, by_label["Germe"].code_system) == ("GERM", "BIOLOC")
    assert by_label["Germe"].status == "P"
    assert [o.status for o in results.observations if o.label == "Potassium"] == ["F", "C"]


def _cells(page: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S)
    table = []
    for row in rows:
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)
        table.append(
            [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c))).strip() for c in cells]
        )
    return [r for r in table if r and r[0] not in ("Analyte", "Analyse")]


def test_the_page_shows_the_values_sent(stored: tuple[Client, Document]) -> None:
    client, document = stored
    response = client.get(reverse("portal:document_viewer", args=[document.pk]))
    assert response.status_code == 200
    rows = _cells(response.content.decode())
    assert len(rows) == len(SENT)
    for row, (label, value, unit, reference, flag) in zip(rows, SENT, strict=True):
        assert row[0].startswith(label), (row, label)
        assert row[1].startswith(value.replace("\n", " ")), (row, value)
        assert row[2] == unit
        assert row[3] == reference
        if flag:
            assert flag in row[4].split(), (row, flag)


def test_the_pdf_shows_the_values_sent(stored: tuple[Client, Document]) -> None:
    client, document = stored
    response = client.get(reverse("portal:document_download", args=[document.pk]))
    assert response["Content-Type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    for label, value, unit, reference, _flag in SENT:
        for expected in (label, *value.split("\n"), unit, reference):
            assert expected in text, expected


def test_the_history_shows_the_values_sent(stored: tuple[Client, Document]) -> None:
    client, document = stored
    response = client.get(reverse("portal:patient_results", args=[document.patient.public_id]))
    text = html.unescape(response.content.decode())
    for label, value, *_rest in SENT:
        assert label in text
        assert value.split("\n")[0] in text


def test_a_stray_control_character_is_shown_not_a_reason_to_lose_the_report(
    vault_home: Path,
) -> None:
    patient = make_patient()
    sender, _ = MllpSender.objects.get_or_create(
        name="BIOMED", defaults={"source_system": "BIOMED"}
    )
    raw = Oru(
        ipp="",
        ins=patient.ins or "",
        service="NFS^Numération\\.br\\formule^L",
        observations=["OBX|1|ST|A^Tab\x07 bell^L||\U0001f600 ok|||||F"],
    ).encode()
    reply = handle(raw, sender=sender)
    assert reply.code == "AA", reply.reason
    results = open_results(Document.objects.get(pk=reply.document_id))
    assert results is not None
    assert results.groups[0].label == "Numération formule"
    observation = results.observations[0]
    assert (observation.label, observation.value) == ("Tab\ufffd bell", "\U0001f600 ok")
