"""Fuzzing the HPRIM parser: whatever the bytes, a parse or one `HprimError` with a reason.

Bounded for CI: a few hundred examples per property, seconds in all.
"""

from __future__ import annotations

import codecs

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie.intake.hprim import HprimError, HprimFile, parse, patient_bytes
from vigie.intake.hprim.charset import decode
from vigie.intake.hprim.testing import TODAY, Report, cases, hprim

BASE = [raw for raw, facts in cases().values() if "error" not in facts]
# Bytes that matter to an HPRIM reader: separators, markers, line ends, BOMs, charset traps.
SPECIAL = st.sampled_from(
    [
        b"|",
        b"\r",
        b"\n",
        b"\r\n",
        b"****LAB****",
        b"****FIN****",
        b"****FINFICHIER****",
        b"RES|",
        b"TEX|",
        b"\x00",
        b"\x1a",
        b"\x0c",
        b"\xe9",
        b"\x82",
        b"\x8e",
        b"\xc3\xa9",
        b"\xc3",
        codecs.BOM_UTF8,
        codecs.BOM_UTF16_LE,
        b"31/02/1985",
        b"99/99/99",
        b"1e9999",
        b"1" * 40,
    ]
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Patient data of the base reports, which no refusal reason may repeat.
PATIENT_DATA = ("MARTIN", "Hélène", "Lilas", "LYON", "03/04/1985", "2611250042")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if action == "insert":
            data[position:position] = draw(st.one_of(SPECIAL, st.binary(max_size=8)))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 40))]
        elif action == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        else:
            del data[position:]
    return bytes(data)


def _parse_or_refuse(raw: bytes) -> HprimFile | HprimError:
    try:
        return parse(raw, today=TODAY)
    except HprimError as refusal:
        return refusal


def _assert_answer(raw: bytes) -> None:
    answer = _parse_or_refuse(raw)
    if isinstance(answer, HprimError):
        assert answer.reason.strip()
        assert answer.line is None or answer.line >= 1
        for datum in PATIENT_DATA:
            assert datum not in answer.reason
        return
    assert answer.patients
    for patient in answer.patients:
        assert patient.family_name
        assert patient.birth_date <= TODAY
        assert patient.nir is None or len(patient.nir) == 15
        # A parse is always serialisable: it is what gets sealed beside the file.
        assert patient.as_dict()["family_name"] == patient.family_name
        # Each patient's part, stored as their document, reads alone as that patient.
        alone = parse(patient_bytes(raw, answer, patient), today=TODAY).patients
        assert [(p.family_name, p.birth_date, p.nir) for p in alone] == [
            (patient.family_name, patient.birth_date, patient.nir)
        ]
        assert len(alone[0].observations) == len(patient.observations)


@FUZZ
@given(mutated())
def test_fuzz_mutated_corpus_files_get_a_parse_or_a_reason(raw: bytes) -> None:
    _assert_answer(raw)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes_get_a_parse_or_a_reason(raw: bytes) -> None:
    _assert_answer(raw)


LINE_TEXT = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"], exclude_characters="\r\n\x0b\x1c\x1d\x1e\x85\u2028\u2029"
    ),
    max_size=30,
)


@FUZZ
@given(
    family=LINE_TEXT,
    given_name=LINE_TEXT,
    birth=LINE_TEXT,
    nir=LINE_TEXT,
    res=st.lists(st.lists(LINE_TEXT, max_size=16).map("|".join), max_size=5),
    charset=st.sampled_from(["utf-8", "utf-8-sig", "utf-16-le-bom", "utf-16-be-bom"]),
)
def test_fuzz_structured_files_round_trip_or_get_a_reason(
    family: str, given_name: str, birth: str, nir: str, res: list[str], charset: str
) -> None:
    lab = tuple(f"RES|{line}" for line in res)
    report = Report(family_name=family, given_name=given_name, birth_date=birth, nir=nir, lab=lab)
    answer = _parse_or_refuse(hprim([report], charset=charset))
    if isinstance(answer, HprimError):
        assert answer.reason.strip()
        return
    patient = answer.patients[0]
    assert patient.family_name == family.strip()
    assert patient.given_name == given_name.strip()
    assert len(patient.observations) == len(lab)


# Words of real French lab reports. Single accented letters can be ambiguous between charsets
# ("à" in MacRoman is "ê" in CP850); a report's words are not, and that is what we detect.
VOCABULARY = [
    "hémoglobine",
    "créatinine",
    "leucocytes",
    "plaquettes",
    "résultat",
    "à",
    "jeun",
    "contrôle",
    "prélèvement",
    "sérum",
    "urée",
    "glycémie",
    "hématies",
    "numération",
    "formule",
    "sanguine",
    "vitesse",
    "sédimentation",
    "protéine",
    "réactive",
    "cholestérol",
    "triglycérides",
    "ferritine",
    "sérologie",
    "négatif",
    "positif",
    "immunité",
    "ancienne",
    "être",
    "Hélène",
    "Chloé",
    "Étienne",
    "François",
    "Cécile",
    "Noël",
    "Zoé",
    "Gaëlle",
    "Jérôme",
    "André",
    "Benoît",
    "Léa",
    "échographie",
    "abdominale",
    "biliaires",
    "hépatique",
    "présence",
    "absence",
    "antériorité",
    "validé",
    "biologiste",
    "taux",
    "élevé",
    "légèrement",
    "diminué",
    "à",
    "contrôler",
    "après",
    "traitement",
    "œdème",
    "cœur",
]
FRENCH_WORD = st.sampled_from(VOCABULARY)
# An accent inside a word is what tells CP850 from MacRoman: an accent opening a word reads as
# a plausible letter in both ("être" in MacRoman is "Étre" in CP850). Every real report has
# such words; the property asks for one.
INSIDE = st.sampled_from(
    [word for word in VOCABULARY if any(not char.isascii() for char in word[1:])]
)


@FUZZ
@given(
    words=st.lists(FRENCH_WORD, max_size=30),
    inside=INSIDE,
    where=st.integers(0, 30),
    charset=st.sampled_from(["iso-8859-1", "windows-1252", "cp850", "mac-roman", "utf-8"]),
)
def test_fuzz_french_text_decodes_back_in_every_charset(
    words: list[str], inside: str, where: int, charset: str
) -> None:
    words.insert(where, inside)
    text = " ".join(words)
    try:
        raw = text.encode(charset)
    except UnicodeEncodeError:
        text = text.replace("œ", "oe")
        raw = text.encode(charset)
    decoded, _name = decode(raw)
    assert decoded == text
