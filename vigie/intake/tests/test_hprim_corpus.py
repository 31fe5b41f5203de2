"""The HPRIM corpus: every file parses to the JSON beside it, and that JSON says what we meant.

The files are written by `python -m vigie.intake.hprim.testing`; each case there states its
facts by hand (charset, patients, a few values, the refusal), checked here against the stored
expectation so a regenerated corpus cannot quietly follow a parser bug.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vigie.intake.hprim import HprimError, parse, patient_bytes
from vigie.intake.hprim.testing import CORPUS, TODAY, cases, expected

FILES = sorted(CORPUS.glob("*.hpr"))


def test_the_corpus_has_at_least_thirty_files_each_with_its_expectation() -> None:
    assert len(FILES) >= 30
    assert all(path.with_suffix(".json").is_file() for path in FILES)
    assert {path.stem for path in FILES} == set(cases())


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_it_parses_each_corpus_file_as_expected(path: Path) -> None:
    stored = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert expected(path.read_bytes()) == stored


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_each_corpus_file_is_still_the_case_that_wrote_it(path: Path) -> None:
    raw, _facts = cases()[path.stem]
    assert path.read_bytes() == raw


def _check_facts(stored: dict[str, Any], facts: dict[str, Any]) -> None:
    if "error" in facts:
        assert "error" in stored, "the file should be refused"
        assert facts["error"] in stored["error"]["reason"]
        assert stored["error"]["line"] == facts.get("line")
        return
    assert "error" not in stored, stored.get("error")
    first = stored["patients"][0]
    if "charset" in facts:
        assert stored["charset"] == facts["charset"]
    if "patients" in facts:
        assert [patient["family_name"] for patient in stored["patients"]] == facts["patients"]
    if "given" in facts:
        assert first["given_name"] == facts["given"]
    for key in ("nir", "birth_date", "date"):
        if key in facts:
            assert first[key] == facts[key]
    if "values" in facts:
        values = {obs["code"]: obs["value"] for obs in first["observations"]}
        if facts["values"]:
            assert {code: values.get(code) for code in facts["values"]} == facts["values"]
        else:
            assert values == {}
    if "warnings" in facts:
        if facts["warnings"]:
            for fragment in facts["warnings"]:
                assert any(fragment in warning for warning in stored["warnings"]), fragment
        else:
            assert stored["warnings"] == []


@pytest.mark.parametrize("name", sorted(cases()))
def test_each_expectation_shows_the_facts_stated_by_hand(name: str) -> None:
    _raw, facts = cases()[name]
    stored = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    _check_facts(stored, facts)


def test_it_reads_the_same_report_alike_in_every_charset() -> None:
    reference = parse(cases()["latin1_crlf"][0], today=TODAY).as_dict()
    for name in (
        "cp850_dos_crlf",
        "cp850_ctrl_z",
        "macroman_cr",
        "utf8_lf",
        "utf8_bom_crlf",
        "utf16le_bom_crlf",
        "utf16be_bom_lf",
    ):
        parsed = parse(cases()[name][0], today=TODAY).as_dict()
        parsed["charset"] = reference["charset"]
        # Byte offsets differ with the charset; everything read from them must not.
        for patient in (*parsed["patients"], *reference["patients"]):
            patient["bytes"] = None
        assert parsed == reference, name


def test_it_keeps_values_units_ranges_flags_and_comments() -> None:
    parsed = parse(cases()["text_results_tex"][0], today=TODAY)
    patient = parsed.patients[0]
    assert patient.lab_notes == ["Résultats validés par le Dr Anne Petit, biologiste."]
    toxo = patient.observations[0]
    assert (toxo.code, toxo.kind, toxo.value, toxo.flag, toxo.status) == (
        "TOXG",
        "A",
        "Positif",
        "A",
        "F",
    )
    assert toxo.comments == ["Immunité ancienne probable.", "Pas de contrôle nécessaire."]
    platelets = parse(cases()["second_value_unit"][0], today=TODAY).patients[0].observations[-1]
    assert (str(platelets.second_value), platelets.second_unit) == ("245000", "/mm3")
    assert (str(platelets.second_low), str(platelets.second_high)) == ("150000", "400000")


def test_it_refuses_the_whole_file_when_one_patient_is_broken() -> None:
    # Never half-stores: the first patient was fine, the second cut short.
    with pytest.raises(HprimError) as refusal:
        parse(cases()["broken_truncated_second_patient"][0], today=TODAY)
    assert refusal.value.line == 28


def _comparable(patient: dict[str, Any]) -> dict[str, Any]:
    # Line numbers and byte offsets count from the start of the part, not of the file.
    del patient["first_line"], patient["bytes"]
    for observation in patient["observations"]:
        del observation["line"]
    return patient


def test_attack_multi_patient_file_is_split_so_no_document_holds_another_patient() -> None:
    # Stored whole under each patient, a batch file would show every physician the results
    # of the other patients in it.
    raw = cases()["multi_patient_three"][0]
    parsed = parse(raw, today=TODAY)
    names = [patient.family_name for patient in parsed.patients]
    assert names == ["MARTIN", "BERNARD", "ROUSSEAU"]
    for patient in parsed.patients:
        part = patient_bytes(raw, parsed, patient)
        others = [name for name in names if name != patient.family_name]
        assert [name for name in others if name.encode("latin-1") in part] == []
        alone = parse(part, today=TODAY)
        assert [p.family_name for p in alone.patients] == [patient.family_name]


@pytest.mark.parametrize(
    "name", sorted(n for n, (_r, facts) in cases().items() if "error" not in facts)
)
def test_each_patient_part_reads_alone_as_that_patient(name: str) -> None:
    raw = cases()[name][0]
    parsed = parse(raw, today=TODAY)
    for patient in parsed.patients:
        alone = parse(patient_bytes(raw, parsed, patient), today=TODAY)
        assert len(alone.patients) == 1
        assert _comparable(alone.patients[0].as_dict()) == _comparable(patient.as_dict())
