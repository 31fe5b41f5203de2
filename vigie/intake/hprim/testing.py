"""Builders for HPRIM test files and the corpus in vigie/intake/tests/hprim_corpus/.

`python -m vigie.intake.hprim.testing` rewrites the corpus: each case's file as a laboratory
would send it and, beside it, the parse we expect (JSON). Every case also states a few facts
by hand (charset, patients, values, the refusal) which the corpus test checks against the JSON,
so a regenerated expectation cannot silently drift into whatever the parser does.
"""

from __future__ import annotations

import codecs
import datetime
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigie.records.identifiers import nir_key

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "hprim_corpus"
# The corpus is parsed as of this day so two-digit years and "future" dates never drift.
TODAY = datetime.date(2026, 12, 1)


def make_nir(body13: str) -> str:
    """A 15-character NIR with the right key for its first 13 characters."""
    return f"{body13}{nir_key(body13):02d}"


@dataclass
class Report:
    """One patient's part of an HPRIM file, line by line as labs write it."""

    family_name: str = "MARTIN"
    given_name: str = "Hélène"
    reference: str = "CR240117"
    address: tuple[str, str] = ("12 rue des Lilas", "Bâtiment B")
    postcode_town: str = "69003 LYON"
    birth_date: str = "03/04/1985"
    nir: str = field(default_factory=lambda: make_nir("2850469123045"))
    lab_reference: str = "2611250042"
    date: str = "25/11/2026"
    sender: str = "LAB0069   Laboratoire des Brotteaux"
    recipient: str = "DR1004200 Dr Jean Dubois"
    text: tuple[str, ...] = (
        "Dossier 2611250042 - prélèvement du 25/11/2026 à 08h10",
        "",
        "HÉMATOLOGIE",
        "Hémoglobine ........ 11,2 g/dl   (12,0 - 16,0)",
        "Leucocytes ......... 7,45 G/l    (4,00 - 10,00)",
    )
    lab: tuple[str, ...] | None = (
        "RES|Hémoglobine|HB|N|11,2|g/dl|12,0|16,0|L|F",
        "RES|Leucocytes|GB|N|7,45|G/l|4,00|10,00||F",
        "RES|Glycémie à jeun|GLY|N|1,32|g/l|0,70|1,10|H|F|7,33|mmol/l|3,89|6,11",
        "TEX|Contrôle conseillé à jeun strict.",
    )

    def lines(self) -> list[str]:
        header = [
            self.reference,
            self.family_name,
            self.given_name,
            *self.address,
            self.postcode_town,
            self.birth_date,
            self.nir,
            self.lab_reference,
            self.date,
            self.sender,
            self.recipient,
        ]
        body = list(self.text)
        if self.lab is not None:
            body += ["****LAB****", *self.lab]
        return header + body


def hprim(
    reports: list[Report],
    *,
    charset: str = "iso-8859-1",
    newline: str = "\r\n",
    between: str = "****FIN****",
    end: str | None = "****FINFICHIER****",
    tail: str = "",
) -> bytes:
    lines: list[str] = []
    for index, report in enumerate(reports):
        lines += report.lines()
        if index < len(reports) - 1 or end is not None:
            lines.append(between)
    if end is not None:
        lines.append(end)
    text = newline.join(lines) + newline + tail
    if charset == "utf-8-sig":
        return codecs.BOM_UTF8 + text.encode("utf-8")
    if charset == "utf-16-le-bom":
        return codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    if charset == "utf-16-be-bom":
        return codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    return text.encode(charset)


CHILD = Report(
    family_name="ROUSSEAU",
    given_name="Léo",
    birth_date="14/06/2019",
    # The mother's number: a woman born in March 1988.
    nir=make_nir("2880375056112"),
    lab=("RES|Ferritine|FERR|N|18|µg/l|20|200|L|F",),
)

# name -> (bytes, facts the parse must show). Facts: "charset", "patients" (family names),
# "values" (code -> value dict of the first patient), "warnings" (substrings), "error" (substring
# of the reason) and "line" (of the refusal).
Case = tuple[bytes, dict[str, Any]]


def _cases() -> dict[str, Case]:
    base = Report()
    tex = Report(
        lab=(
            "TEX|Résultats validés par le Dr Anne Petit, biologiste.",
            "RES|Sérologie toxoplasmose IgG|TOXG|A|Positif||||A|F",
            "TEX|Immunité ancienne probable.",
            "TEX|Pas de contrôle nécessaire.",
            "RES|Groupe sanguin|GRP|C|A Rh+|||||F",
            "RES|Commentaire général|COM|T||||||F",
            "TEX|Prélèvement hémolysé : potassium non rendu.",
        )
    )
    flags = Report(
        lab=(
            "RES|Potassium|K|N|2,8|mmol/l|3,5|5,0|LL|F",
            "RES|Sodium|NA|N|152|mmol/l|135|145|HH|F",
            "RES|Créatinine|CREA|N|98|µmol/l|45|90|H|C",
            "RES|CRP|CRP|N|2|mg/l||5|N|P",
            "RES|Aspect du sérum|ASP|A|Lactescent||||A|F",
            "RES|TSH|TSH|N|1,92|mUI/l|0,27|4,20||F",
        )
    )
    textual = Report(
        lab=(
            "RES|Troponine|TROP|N|<0,5|ng/l||14||F",
            "RES|Leucocytes urinaires|LEU|N|> 1000|/mm3||10|H|F",
            "RES|Hémocultures|HEMOC|A|négatif||||N|P",
            "RES|Vitamine D|VITD|N|non fait|ng/ml|30|100||F",
            "RES|Plaquettes|PLQ|N|245|G/l|150|400||F|245000|/mm3|150000|400000",
        )
    )
    cases: dict[str, Case] = {
        "latin1_crlf": (hprim([base]), {"charset": "iso-8859-1", "patients": ["MARTIN"]}),
        "cp1252_quotes_lf": (
            hprim(
                [Report(given_name="Chloé", text=("Cœur : l’échographie est normale.",))],
                charset="windows-1252",
                newline="\n",
            ),
            {"charset": "windows-1252", "given": "Chloé"},
        ),
        "cp850_dos_crlf": (hprim([base], charset="cp850"), {"charset": "cp850"}),
        "cp850_ctrl_z": (hprim([base], charset="cp850", tail="\x1a"), {"charset": "cp850"}),
        "macroman_cr": (
            hprim([base], charset="mac-roman", newline="\r"),
            {"charset": "mac-roman", "given": "Hélène"},
        ),
        "utf8_lf": (hprim([base], charset="utf-8", newline="\n"), {"charset": "utf-8"}),
        "utf8_bom_crlf": (hprim([base], charset="utf-8-sig"), {"charset": "utf-8-sig"}),
        "utf16le_bom_crlf": (hprim([base], charset="utf-16-le-bom"), {"charset": "utf-16"}),
        "utf16be_bom_lf": (
            hprim([base], charset="utf-16-be-bom", newline="\n"),
            {"charset": "utf-16"},
        ),
        "ascii_only": (
            hprim(
                [
                    Report(
                        given_name="Paul",
                        address=("3 place Bellecour", ""),
                        text=("Bilan normal.",),
                        lab=(),
                    )
                ],
                charset="ascii",
            ),
            {"charset": "utf-8", "given": "Paul"},
        ),
        "multi_patient_three": (
            hprim(
                [
                    base,
                    Report(
                        family_name="BERNARD", given_name="Étienne", nir=make_nir("1720133063125")
                    ),
                    CHILD,
                ]
            ),
            {"patients": ["MARTIN", "BERNARD", "ROUSSEAU"]},
        ),
        "multi_patient_no_finfichier": (
            hprim([base, CHILD], end=None, between="****FIN****") + b"****FIN****\r\n",
            {"patients": ["MARTIN", "ROUSSEAU"], "warnings": []},
        ),
        "no_end_marker": (
            hprim([base], end=None),
            {"patients": ["MARTIN"], "warnings": ["no ****FIN**** or ****FINFICHIER****"]},
        ),
        "text_only_radiology": (
            hprim(
                [
                    Report(
                        sender="RAD0012   Cabinet de radiologie du Parc",
                        text=(
                            "ÉCHOGRAPHIE ABDOMINALE",
                            "Foie de taille normale, d’échostructure homogène.",
                            "Pas de dilatation des voies biliaires.",
                        ),
                        lab=None,
                    )
                ],
                charset="windows-1252",
            ),
            {"charset": "windows-1252", "values": {}},
        ),
        "text_results_tex": (hprim([tex]), {"values": {"TOXG": {"text": "Positif"}}}),
        "second_value_unit": (
            hprim([textual]),
            {"values": {"PLQ": {"number": "245"}}},
        ),
        "flags_and_status": (hprim([flags]), {"values": {"K": {"number": "2.8"}}}),
        "values_as_text": (
            hprim([textual]),
            {"values": {"TROP": {"text": "<0,5"}, "VITD": {"text": "non fait"}}},
        ),
        "nir_of_parent_for_child": (hprim([CHILD]), {"patients": ["ROUSSEAU"]}),
        "nir_without_key": (
            hprim([Report(nir="2850469123045")]),
            {"nir": None, "warnings": ["the NIR has no key"]},
        ),
        "nir_bad_key": (
            hprim([Report(nir="2 85 04 69 123 045 12")]),
            {"nir": None, "warnings": ["control key does not match"]},
        ),
        "nir_corsica_spaced": (
            hprim(
                [
                    Report(
                        nir=" ".join(
                            ["1", "62", "11", "2A", "004", "017", make_nir("162112A004017")[-2:]]
                        )
                    )
                ]
            ),
            {"nir": make_nir("162112A004017")},
        ),
        "nir_empty": (hprim([Report(nir="")]), {"nir": None, "warnings": []}),
        "birth_date_two_digit_year": (
            hprim([Report(birth_date="03/04/85")]),
            {"birth_date": "1985-04-03"},
        ),
        "birth_date_compact": (
            hprim([Report(birth_date="03041985")]),
            {"birth_date": "1985-04-03"},
        ),
        "report_date_with_time": (
            hprim([Report(date="25/11/2026 10:45")]),
            {"date": "2026-11-25"},
        ),
        "report_date_missing": (
            hprim([Report(date="")]),
            {"date": None, "warnings": ["no report date"]},
        ),
        "postcode_variants": (
            hprim(
                [
                    Report(postcode_town="75 012 PARIS"),
                    Report(family_name="DURAND", postcode_town="20000 AJACCIO"),
                    Report(family_name="PETIT", postcode_town="LYON"),
                ]
            ),
            {"patients": ["MARTIN", "DURAND", "PETIT"]},
        ),
        "form_feed_in_text": (
            hprim([Report(text=("Page 1", "\x0cPage 2", "Fin du compte rendu"))]),
            {"patients": ["MARTIN"]},
        ),
        "text_after_finfichier": (
            hprim([base], tail="Envoyé par MediLab v4.2\r\n"),
            {"warnings": ["after ****FINFICHIER****"]},
        ),
        "res_extra_fields": (
            hprim([Report(lab=("RES|Urée|UREE|N|5,1|mmol/l|2,5|7,5||F|||||X|Y",))]),
            {"values": {"UREE": {"number": "5.1"}}, "warnings": ["after the 14th"]},
        ),
        "markers_lowercase_spaced_blank_lines": (
            hprim(
                [Report(lab=("", "  RES|Urée|UREE|N|5,1|mmol/l|2,5|7,5||F  ", "   ", "tex|Ok"))],
                between="**** fin ****",
                end="****FinFichier****",
            ).replace(b"****LAB****", b"  ****  lab  ****"),
            {"values": {"UREE": {"number": "5.1"}}},
        ),
        "res_without_lab_marker": (
            hprim(
                [Report(text=("Résultats :", "RES|Urée|UREE|N|5,1|mmol/l|2,5|7,5||F"), lab=None)]
            ),
            {"values": {}, "warnings": ["RES| lines before ****LAB**** are kept as text"]},
        ),
        # Refused files: the reason names what to fix.
        "broken_empty": (b"\r\n\r\n", {"error": "the file is empty"}),
        "broken_only_markers": (b"****FIN****\r\n****FINFICHIER****\r\n", {"error": "no patient"}),
        "broken_short_header": (
            "\r\n".join([*Report().lines()[:8], "****LAB****", "RES|Urée|UREE|N|5,1"]).encode(
                "latin-1"
            ),
            {"error": "the header has 8 of its 12 lines", "line": 9},
        ),
        "broken_truncated_second_patient": (
            hprim([base]).split(b"****FINFICHIER****")[0]
            + "\r\n".join(CHILD.lines()[:5]).encode("latin-1"),
            {"error": "patient 2", "line": 28},
        ),
        "broken_birth_date_invalid": (
            hprim([Report(birth_date="31/02/1985")]),
            {"error": "header line 7 must be the birth date", "line": 7},
        ),
        "broken_birth_date_future": (
            hprim([Report(birth_date="02/12/2026")]),
            {"error": "in the future", "line": 7},
        ),
        "broken_report_date": (
            hprim([Report(date="le 25 novembre")]),
            {"error": "header line 10 must be the report date", "line": 10},
        ),
        "broken_missing_family_name": (
            hprim([Report(family_name="")]),
            {"error": "header line 2 (family name) is empty", "line": 2},
        ),
        "broken_wrapped_res_line": (
            hprim([Report(lab=("RES|Glycémie|GLY|N|1,32|g/l|0,70", "|1,10|H|F"))]),
            {"error": "every line starts with RES| or TEX|", "line": 20},
        ),
        "broken_res_without_label_or_code": (
            hprim([Report(lab=("RES|||N|5,1|mmol/l",))]),
            {"error": "neither a label nor a code", "line": 19},
        ),
        "broken_utf16_without_bom": (
            "\r\n".join(Report().lines()).encode("utf-16-le"),
            {"error": "UTF-16 needs a byte-order mark"},
        ),
        "broken_bom_then_latin1": (
            codecs.BOM_UTF8 + hprim([base]),
            {"error": "not valid UTF-8"},
        ),
        "broken_pdf_named_hpr": (
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length 12 >>\nstream\n\x01\x02x\x9c\nendstream",
            {"error": "control character", "line": 6},
        ),
    }
    return cases


def cases() -> dict[str, Case]:
    return _cases()


def expected(raw: bytes) -> dict[str, Any]:
    """The JSON the corpus stores: the parse, or the refusal."""
    from .parser import HprimError, parse

    try:
        return parse(raw, today=TODAY).as_dict()
    except HprimError as exc:
        return {"error": {"reason": exc.reason, "line": exc.line}}


def write_corpus(out: Callable[[str], object] = print) -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, (raw, _facts) in sorted(cases().items()):
        (CORPUS / f"{name}.hpr").write_bytes(raw)
        text = json.dumps(expected(raw), ensure_ascii=False, indent=2, sort_keys=True)
        (CORPUS / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        out(name)


if __name__ == "__main__":
    write_corpus(lambda line: sys.stdout.write(line + "\n"))
