"""The values a physician is shown are the values the laboratory sent: every `RES|…` field
and `TEX|…` line of an HPRIM file, through the hot folder and through REST, sealed beside
each patient's document (`records.results`), one result set per patient of a multi-patient
file, and none of them in a clear database column.

The expectations are read from the RES lines as written (split on "|"), not from the parser,
so a parser that misread a field would fail here.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from vigie.intake.folder import HotFolder
from vigie.intake.hprim.testing import TODAY, Report, hprim, make_nir
from vigie.intake.rest.testing import new_key
from vigie.records.models import Document, Patient, PendingDocument, SealedResults
from vigie.records.results import Observation, ResultSet
from vigie.records.results_store import open_results

pytestmark = pytest.mark.django_db

NUMERIC = (
    "RES|Hémoglobine|HB|N|11,2|g/dl|12,0|16,0|L|F",
    "RES|Potassium|K|N|2,8|mmol/l|3,5|5,0|LL|F",
    "TEX|Contrôle à 48 h.",
    "RES|Glycémie à jeun|GLY|N|1,32|g/l|0,70|1,10|H|C|7,33|mmol/l|3,89|6,11",
    "RES|CRP|CRP|N|2|mg/l||5|N|P",
    "RES|Plaquettes|PLQ|N|245|G/l|150|400||F|245000|/mm3|150000|400000",
)
TEXTUAL = (
    "TEX|Résultats validés par le Dr Anne Petit, biologiste.",
    "RES|Sérologie toxoplasmose IgG|TOXG|A|Positif||||A|F",
    "TEX|Immunité ancienne probable.",
    "TEX|Pas de contrôle nécessaire.",
    "RES|Groupe sanguin|GRP|C|1|||||F",
    "RES|Troponine|TROP|N|<0,5|ng/l||14||F",
    "RES|Vitamine D|VITD|N|non fait|ng/ml|30|100||F",
)
MARTIN_NIR = make_nir("2850469123045")


def sent(lines: tuple[str, ...]) -> list[dict[str, Any]]:
    """What each RES line says, field by field as written, with the TEX lines after it."""
    found: list[dict[str, Any]] = []
    for line in lines:
        fields = line.split("|") + [""] * 14
        if fields[0] == "TEX":
            if found:
                found[-1]["comments"].append(fields[1])
            continue
        found.append(
            {
                "label": fields[1],
                "code": fields[2],
                "type": fields[3],
                "value": fields[4],
                "unit": fields[5],
                "low": fields[6],
                "high": fields[7],
                "flag": fields[8],
                "status": fields[9],
                "second_value": fields[10],
                "second_unit": fields[11],
                "comments": [],
            }
        )
    return found


def shown(observation: Observation) -> dict[str, Any]:
    return {
        "label": observation.label,
        "code": observation.code,
        "type": observation.value_type,
        "value": observation.value,
        "unit": observation.unit,
        "flag": observation.flag,
        "status": observation.status,
        "second_value": observation.second_value,
        "second_unit": observation.second_unit,
        "comments": list(observation.comments),
    }


def assert_values_are_the_sent_ones(results: ResultSet, lines: tuple[str, ...]) -> None:
    expected = sent(lines)
    observations = results.observations
    assert [shown(o) for o in observations] == [
        {k: v for k, v in e.items() if k not in ("low", "high")} for e in expected
    ]
    for observation, line in zip(observations, expected, strict=True):
        # The range as the lab bounded it, and its numbers for charts and flags.
        assert observation.low == (Decimal(line["low"].replace(",", ".")) if line["low"] else None)
        assert observation.high == (
            Decimal(line["high"].replace(",", ".")) if line["high"] else None
        )
        if line["low"] and line["high"]:
            assert observation.reference_range == f"{line['low']} - {line['high']}"
        elif line["high"]:
            assert observation.reference_range == f"< {line['high']}"
        # A number only where the lab sent a numeric type and a plain number.
        plain = line["value"].replace(",", ".").replace(".", "", 1).isdigit()
        if line["type"] == "N" and plain:
            assert observation.numeric == Decimal(line["value"].replace(",", "."))
        else:
            assert observation.numeric is None
        assert observation.code_system == "LABO-BROTTEAUX"


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HotFolder]:
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


@pytest.fixture
def martin() -> Patient:
    return Patient.objects.create(
        ipp="IPP-MARTIN",
        ins=MARTIN_NIR,
        family_name="MARTIN",
        given_names="Hélène",
        birth_date=datetime.date(1985, 4, 3),
        sex="F",
    )


def row_of(document_id: str) -> Document | PendingDocument:
    found = Document.objects.filter(pk=document_id).first()
    return found or PendingDocument.objects.get(pk=document_id)


def results_of(document_id: str) -> ResultSet:
    results = open_results(row_of(document_id))
    assert results is not None
    return results


def test_numeric_results_through_the_folder_are_the_values_sent(
    folder: HotFolder, martin: Patient
) -> None:
    (folder.path / "numeric.hpr").write_bytes(hprim([Report(lab=NUMERIC)]))
    (outcome,), _settling = folder.scan()
    results = results_of(outcome.document_id)
    assert_values_are_the_sent_ones(results, NUMERIC)
    flags = {o.code: o.abnormal for o in results.observations}
    assert flags == {"HB": True, "K": True, "GLY": True, "CRP": False, "PLQ": False}
    assert results.reference == Report().lab_reference
    assert results.reported_at == datetime.datetime(2026, 11, 25)
    # The printed report travels with the values, the lab's own layout kept.
    assert "Hémoglobine ........ 11,2 g/dl   (12,0 - 16,0)" in "\n".join(results.comments)


def test_text_results_through_rest_are_the_values_sent(client: Client) -> None:
    _key, text = new_key("labo-bio")
    _key.source_system = "LABO-BROTTEAUX"
    _key.save()
    raw = hprim([Report(lab=TEXTUAL, nir="")])
    response = client.post(
        "/api/v1/hprim", raw, content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {text}"
    )
    assert response.status_code == 202, response.content
    results = results_of(response.json()["ids"][0])
    assert_values_are_the_sent_ones(results, TEXTUAL)
    # The note before the first result belongs to the whole block.
    assert results.comments[-1] == "Résultats validés par le Dr Anne Petit, biologiste."
    # A coded "1" is a code, never the number one.
    blood_group = next(o for o in results.observations if o.code == "GRP")
    assert (blood_group.value, blood_group.numeric) == ("1", None)


def test_a_multi_patient_file_gives_each_document_its_own_patients_values_only(
    folder: HotFolder, martin: Patient
) -> None:
    first = Report(lab=NUMERIC)
    second = Report(family_name="BERNARD", nir=make_nir("1720133063125"), lab=TEXTUAL)
    third = Report(family_name="PETIT", nir="", lab=None, text=("Échographie normale.",))
    (folder.path / "batch.hpr").write_bytes(hprim([first, second, third]))
    (outcome,), _settling = folder.scan()
    ids = outcome.document_id.split(",")
    assert len(ids) == 3
    assert isinstance(row_of(ids[0]), Document)
    assert_values_are_the_sent_ones(results_of(ids[0]), NUMERIC)
    assert_values_are_the_sent_ones(results_of(ids[1]), TEXTUAL)
    # A text-only report: no values, its text kept for the reader.
    text_only = results_of(ids[2])
    assert text_only.observations == []
    assert text_only.comments == ("Échographie normale.",)


def test_no_value_or_code_sits_in_a_clear_column(folder: HotFolder, martin: Patient) -> None:
    (folder.path / "numeric.hpr").write_bytes(hprim([Report(lab=NUMERIC)]))
    (outcome,), _settling = folder.scan()
    document = Document.objects.get(pk=outcome.document_id)
    sealed = SealedResults.objects.get()
    clear = " ".join(
        str(value)
        for row in (document, sealed)
        for value in vars(row).values()
        if not isinstance(value, bytes | memoryview)
    )
    for secret in ("Hémoglobine", "Potassium", "GLY", "11,2", "mmol/l"):
        assert secret not in clear
        assert secret.encode() not in bytes(sealed.results)
    assert document.title == "Laboratoire des Brotteaux – CR240117"


def test_a_result_the_contract_refuses_refuses_the_file_with_its_line(
    folder: HotFolder,
) -> None:
    long_label = "RES|" + "A" * 600 + "|X|N|1|g/l|||| F"
    raw = hprim([Report(), Report(lab=(long_label,))])
    lines = raw.decode("latin-1").split("\r\n")
    assert lines[41] == long_label  # line 42
    assert lines[23] == "CR240117"  # line 24: the second patient's first header line
    (folder.path / "long.hpr").write_bytes(raw)
    (outcome,), _settling = folder.scan()
    assert outcome.status == "quarantined"
    assert "line 42: patient 2 (line 24)" in outcome.detail
    assert "longer than 500 characters" in outcome.detail
    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()
    assert not SealedResults.objects.exists()
