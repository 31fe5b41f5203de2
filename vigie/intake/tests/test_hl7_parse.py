"""HL7 v2 ORU^R01 reading, the ACK format and the rendered report (no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigie.intake.hl7 import ack
from vigie.intake.hl7.oru import read_oru
from vigie.intake.hl7.parser import (
    ErrorCode,
    Header,
    HL7Error,
    Separators,
    _split_field,
    parse,
    peek_header,
    unescape,
)
from vigie.intake.hl7.testing import Oru, ack_fields, ed_segment, small_pdf

INS = "285037500100132"  # a NIR with a valid key (97 - 2850375001001 mod 97 = 32)


def _refusal(raw: bytes) -> HL7Error:
    with pytest.raises(HL7Error) as caught:
        read_oru(parse(raw))
    return caught.value


# -- realistic messages, one per accepted version ---------------------------------------------

V23 = (
    "MSH|^~\\&|SGL|LABO ST JEAN|VIGIE|CLINIQUE|200811041030||ORU^R01|0000123|P|2.3\r"
    "PID|||778899^^^LABO ST JEAN||BERTRAND^Louis||19480213|M\r"
    "OBR|1||A778|GLY^Glycemie a jeun^L|||200811040745|||||||||11111^DUPONT^Marc^^^Dr\r"
    "OBX|1|NM|GLY^Glucose^L||1.32|g/L|0.70-1.10|H|||F\r"
)
V231 = (
    "MSH|^~\\&|KALISIL|LBM CENTRE|VIGIE|CLINIQUE|20100315||ORU^R01|K-2010-77|P|2.3.1|||AL|NE||8859/1\r"
    "PID|1||99001^^^LBM CENTRE^PI||MÉNARD^Hélène||19620720|F\r"
    "OBR|1||X1|CREA^Créatinine^L|||20100315\r"
    "OBX|1|NM|CREA^Créatinine^L||88|µmol/L|45-90||||F\r"
)
V24 = (
    "MSH|^~\\&|GLIMS|CHU|VIGIE|CLINIQUE|20150610121314||ORU^R01|CHU000001|P|2.4\r"
    "PID|1||12345^^^CHU^PI||PETIT^Anne\r"
    "OBR|1||Z9|TSH^Thyr\\XE9\\ostimuline^L|||20150610081500\r"
    "OBX|1|NM|TSH^TSH^L||5.8|mUI/L|0.4-4.0|H|||F\r"
)
V25 = (
    "MSH|^~\\&|MOLIS|BIOPATH|VIGIE|CLINIQUE|20200101||ORU^R01^ORU_R01|BP-1|P|2.5|||||FRA|UNICODE UTF-8\r"
    "PID|1||A1^^^BIOPATH^PI||GARCIA^José||19900101|M\r"
    "OBR|1||Q1|HBA1C^Hémoglobine glyquée^L|||20200101\r"
    "OBX|1|NM|4548-4^HbA1c^LN||6.9|%|4.0-6.0|H|||F\r"
)


@pytest.mark.parametrize(
    ("raw", "version", "family", "ipp", "source", "title", "clinical", "value"),
    [
        (
            V23.encode("ascii"),
            "2.3",
            "BERTRAND",
            "778899",
            "LABO ST JEAN",
            "Glycemie a jeun",
            date(2008, 11, 4),
            "1.32",
        ),
        (
            V231.encode("latin-1"),
            "2.3.1",
            "MÉNARD",
            "99001",
            "LBM CENTRE",
            "Créatinine",
            date(2010, 3, 15),
            "88",
        ),
        (
            V24.encode("ascii"),
            "2.4",
            "PETIT",
            "12345",
            "CHU",
            "Thyréostimuline",
            date(2015, 6, 10),
            "5.8",
        ),
        (
            V25.encode("utf-8"),
            "2.5",
            "GARCIA",
            "A1",
            "BIOPATH",
            "Hémoglobine glyquée",
            date(2020, 1, 1),
            "6.9",
        ),
        (
            Oru().encode(),
            "2.5.1",
            "DURAND",
            "L123456",
            "BIOMED",
            "Numération formule sanguine",
            date(2026, 11, 2),
            "9.1",
        ),
    ],
)
def test_it_reads_each_accepted_version(raw, version, family, ipp, source, title, clinical, value):
    message = parse(raw)
    result = read_oru(message)
    assert message.version == version
    assert result.patient.family_name == family
    assert result.patient.ipp == ipp
    assert result.patient.ipp_source == source
    assert result.title == title
    assert result.clinical_date == clinical
    assert result.orders[0].observations[0].value == value


def test_it_reads_patient_order_and_results_of_a_full_message():
    oru = Oru(ins=INS)
    message = parse(oru.encode())
    result = read_oru(message)
    assert message.control_id == "MSG00001"
    assert message.source == "LABWARE^BIOMED"
    patient = result.patient
    assert (patient.ins, patient.ipp, patient.ipp_source) == (INS, "L123456", "BIOMED")
    assert (patient.family_name, patient.given_names, patient.sex) == (
        "DURAND",
        "Camille Marie",
        "F",
    )
    assert patient.birth_date == date(1985, 3, 14)
    order = result.orders[0]
    assert order.observed_at == datetime(2026, 11, 2, 8, 30)
    # OBR-32 (the biologist who validated) wins over OBR-16 (who ordered).
    assert result.author == "Dr Paul LEROY"
    by_code = {o.code: o for o in order.observations}
    assert by_code["718-7"].name == "Hémoglobine"
    assert (by_code["718-7"].units, by_code["718-7"].reference_range) == ("g/dL", "12.0-16.0")
    assert by_code["718-7"].flags == "L"
    assert by_code["777-3"].flags == "HH"
    assert by_code["5130-0"].value == "<0.5"  # SN: comparator and number
    assert by_code["882-1"].value == "Groupe A"  # CE: the text, not the code
    assert by_code["8251-1"].value == "Contrôle conseillé\ndans 15 jours"
    assert all(o.status == "F" for o in order.observations)


def test_it_falls_back_to_the_ordering_provider_and_leaves_an_unqualified_ipp_unqualified():
    result = read_oru(parse(Oru(interpreter="", ipp_authority="").encode()))
    assert result.author == "Dr Jeanne MARTIN"
    # An unqualified IPP stays unqualified here: the handler places it in the system of the
    # sender the connection authenticated, never in what MSH-4 claims.
    assert result.patient.ipp_source == ""


def test_it_recognises_the_ins_only_by_its_oid():
    oru = Oru(ipp="", ins=INS)
    assert read_oru(parse(oru.encode())).patient.ins == INS
    # The same number under another authority is just another system's identifier.
    other = Oru(ipp=INS, ipp_authority="CPAM")
    patient = read_oru(parse(other.encode())).patient
    assert patient.ins is None
    assert (patient.ipp, patient.ipp_source) == (INS, "CPAM")


def test_it_reads_sn_ratios_and_ranges():
    oru = Oru(
        observations=["OBX|1|SN|X^Titre^L||^1^:^128|||||F", "OBX|2|SN|Y^Plage^L||^2^-^5||||||F"]
    )
    values = [o.value for o in read_oru(parse(oru.encode())).orders[0].observations]
    assert values == ["1:128", "2-5"]


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("C:\\E\\temp", "C:\\temp"),
        ("\\X48656C6C6F\\", "Hello"),
        ("\\XC3A9\\t\\XE9\\", "été"),  # UTF-8 hex, then a Latin-1 byte
        ("ligne 1\\.br\\ligne 2", "ligne 1\nligne 2"),
        ("\\H\\important\\N\\", "important"),
        ("\\.sp2\\", "\n\n"),
        ("\\C2842\\ascii", "ascii"),
        (
            "broken \\X4\\ and \\Q\\ and \\unterminated",
            "broken \\X4\\ and \\Q\\ and \\unterminated",
        ),
    ],
)
def test_it_resolves_escape_sequences(escaped, plain):
    assert unescape(escaped, Separators()) == plain


def test_escapes_follow_the_declared_encoding_characters():
    seps = Separators(field="!", component="@", repetition="*", escape="$", subcomponent="%")
    assert unescape("a$F$b$S$c$E$", seps) == "a!b@c$"
    text = Oru().text().replace("|", "!").replace("^", "@").replace("~", "*").replace("&", "%")
    text = text.replace("MSH!@*\\%", "MSH!@*$%").replace("\\.br\\", "$.br$")
    result = read_oru(parse(text.encode("utf-8")))
    assert result.patient.family_name == "DURAND"
    assert result.orders[0].observations[-1].value == "Contrôle conseillé\ndans 15 jours"


def test_escaped_separators_in_values_stay_values():
    oru = Oru(observations=["OBX|1|ST|X^Note \\T\\ remarque^L||A\\F\\B\\S\\C|||||F"])
    observation = read_oru(parse(oru.encode())).orders[0].observations[0]
    assert observation.name == "Note & remarque"
    assert observation.value == "A|B^C"


def test_it_accepts_lf_segment_terminators():
    raw = Oru().text().replace("\r", "\n").encode("utf-8")
    assert len(read_oru(parse(raw)).orders[0].observations) == 6


def test_hl7_null_is_empty():
    oru = Oru(observations=['OBX|1|NM|718-7^Hb^LN||9.1|""|""|""|||F'])
    observation = read_oru(parse(oru.encode())).orders[0].observations[0]
    assert (observation.units, observation.reference_range, observation.flags) == ("", "", "")


# -- character sets -------------------------------------------------------------------------


def test_it_decodes_latin_1_and_utf_8_as_declared():
    latin = Oru(charset="8859/1").encode()
    utf8 = Oru(charset="UNICODE UTF-8").encode()
    assert latin != utf8
    for raw in (latin, utf8):
        assert read_oru(parse(raw)).orders[0].observations[0].name == "Hémoglobine"


@pytest.mark.parametrize(
    ("oru", "codec", "needle"),
    [
        # UTF-8 declared, Latin-1 sent: the classic misconfigured interface.
        (Oru(charset="UNICODE UTF-8"), "latin-1", "not valid utf-8"),
        # Nothing declared means ASCII: an accented byte is a lie about the charset.
        (Oru(charset=""), "utf-8", "MSH-18 is empty, which means ASCII"),
        (Oru(charset="ASCII"), "utf-8", "not valid ascii"),
    ],
)
def test_a_body_undecodable_in_the_declared_charset_is_rejected(oru, codec, needle):
    error = _refusal(oru.encode(codec))
    assert error.ack_code == "AR"
    assert error.code == ErrorCode.DATA_TYPE
    assert needle in error.text
    assert error.position == 18


def test_an_unknown_charset_is_rejected():
    error = _refusal(Oru(charset="KOI8-R").encode("utf-8"))
    assert (error.ack_code, error.code) == ("AR", ErrorCode.TABLE_VALUE_NOT_FOUND)
    assert "MSH-18" in error.text


# -- the header -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (Oru(encoding_characters="^~\\").encode(), "MSH-2 (encoding characters) '^~\\\\' has 3"),
        (Oru(encoding_characters="^^\\&").encode(), "repeats a character"),
        # MSH-1 inside MSH-2 cuts it short.
        (Oru(encoding_characters="^~|&").encode(), "'^~' has 2 characters"),
        (Oru(encoding_characters="^~A&").encode(), "contains a letter"),
        (Oru().encode().replace(b"MSH|", b"MSHX", 1), "MSH-1 (field separator) is 'X'"),
        (
            Oru(name="DURAND^Camille", observations=["OBX|1|NM|A^B^L||1"])
            .encode()
            .replace(b"MSH|^~\\&|", b"MSH^|~\\&^", 1),
            "fields when split on '^'",
        ),
    ],
)
def test_wrong_separators_are_rejected_with_a_clear_reason(raw, needle):
    error = _refusal(raw)
    assert error.ack_code == "AR"
    assert needle in error.text


def test_a_missing_control_id_is_rejected():
    error = _refusal(Oru(control_id="").encode())
    assert (error.ack_code, error.code) == ("AR", ErrorCode.REQUIRED_FIELD_MISSING)
    assert error.text.startswith("MSH-10 missing")
    assert (error.segment, error.position) == ("MSH", 10)


@pytest.mark.parametrize(
    ("oru", "code", "needle"),
    [
        (Oru(message_type="ADT^A01"), ErrorCode.UNSUPPORTED_MESSAGE_TYPE, "'ADT^A01'"),
        (Oru(version="2.6"), ErrorCode.UNSUPPORTED_VERSION, "'2.6'"),
        (Oru(version="2.2"), ErrorCode.UNSUPPORTED_VERSION, "2.3, 2.3.1, 2.4, 2.5, 2.5.1"),
        (
            Oru(sending_application="", sending_facility=""),
            ErrorCode.REQUIRED_FIELD_MISSING,
            "MSH-3",
        ),
    ],
)
def test_header_values_out_of_scope_are_rejected(oru, code, needle):
    error = _refusal(oru.encode())
    assert (error.ack_code, error.code) == ("AR", code)
    assert needle in error.text


def test_garbage_is_rejected_as_a_segment_sequence_error():
    for raw in (b"", b"GET / HTTP/1.1\r\n\r\n", b"PID|1||x", b"\x01\xff"):
        error = _refusal(raw)
        assert (error.ack_code, error.code) == ("AR", ErrorCode.SEGMENT_SEQUENCE)
    assert _refusal(b"MSH").code == ErrorCode.DATA_TYPE  # no MSH-1 at all
    # Binary with a NUL is refused as such, before any parsing.
    binary = _refusal(b"\x00\xff")
    assert (binary.ack_code, binary.code) == ("AR", ErrorCode.DATA_TYPE)
    assert "NUL byte" in binary.text


# -- the content ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oru", "code", "needle"),
    [
        (Oru(observed_at=""), ErrorCode.REQUIRED_FIELD_MISSING, "OBR-7"),
        (Oru(observed_at="2026-11-02"), ErrorCode.DATA_TYPE, "OBR-7"),
        (Oru(observed_at="20261340"), ErrorCode.DATA_TYPE, "not a date"),
        (Oru(birth_date="1985"), ErrorCode.DATA_TYPE, "PID-7"),
        (Oru(service=""), ErrorCode.REQUIRED_FIELD_MISSING, "OBR-4"),
        (Oru(observations=[]), ErrorCode.SEGMENT_SEQUENCE, "no OBX"),
        (Oru(observations=["OBX|1|XYZ|A^B||1"]), ErrorCode.TABLE_VALUE_NOT_FOUND, "OBX-2"),
    ],
)
def test_content_errors_are_application_errors(oru, code, needle):
    error = _refusal(oru.encode())
    assert (error.ack_code, error.code) == ("AE", code)
    assert needle in error.text


def test_segment_order_is_checked():
    no_pid = Oru().text().replace("PID|", "ZPD|").encode()
    assert "no PID" in _refusal(no_pid).text
    lines = Oru().text().split("\r")
    obx_first = "\r".join([lines[0], lines[1], lines[3], lines[2], *lines[4:]]).encode()
    assert "OBX before any OBR" in _refusal(obx_first).text


def test_an_embedded_pdf_is_returned_as_sent():
    pdf = small_pdf()
    result = read_oru(parse(Oru(observations=[ed_segment(pdf)]).encode()))
    assert result.attachment is not None
    assert result.attachment.data == pdf
    assert result.attachment.content_type == "application/pdf"


def test_a_truncated_base64_pdf_is_an_application_error():
    segment = ed_segment(small_pdf())[: -(7 + 10)] + "||||||F"  # 10 characters short
    error = _refusal(Oru(observations=[segment]).encode())
    assert (error.ack_code, error.code) == ("AE", ErrorCode.DATA_TYPE)
    assert "not valid Base64" in error.text


def test_two_embedded_documents_are_refused_rather_than_one_lost():
    pdf = small_pdf()
    error = _refusal(Oru(observations=[ed_segment(pdf, 1), ed_segment(pdf, 2)]).encode())
    assert error.ack_code == "AE"
    assert "one message per document" in error.text


# -- the ACK --------------------------------------------------------------------------------


def test_an_ack_swaps_sender_and_receiver_and_echoes_the_control_id():
    raw = Oru(control_id="CTRL|42").text().replace("CTRL|42", "CTRL\\F\\42").encode("utf-8")
    message = parse(raw)
    header = peek_header(raw)
    built = ack.build(header, ack.ACCEPT)
    # Checked with the hl7 library's own parser, not ours.
    parsed = hl7.parse(built.decode("utf-8"))
    assert str(parsed.segment("MSH")(3)) == "VIGIE"
    assert str(parsed.segment("MSH")(4)) == "CLINIQUE"
    assert str(parsed.segment("MSH")(5)) == "LABWARE"
    assert str(parsed.segment("MSH")(6)) == "BIOMED"
    assert str(parsed.segment("MSH")(9)) == "ACK^R01^ACK"
    assert str(parsed.segment("MSH")(12)) == "2.5.1"
    assert str(parsed.segment("MSA")(1)) == "AA"
    assert parsed.unescape(str(parsed.segment("MSA")(2))) == message.control_id == "CTRL|42"
    assert str(parsed.segment("MSH")(10)) != "CTRL\\F\\42"  # the ACK has its own id


def test_an_error_ack_carries_msa_3_and_both_err_forms():
    header = peek_header(Oru(version="2.3").encode())
    error = HL7Error(
        "AE", ErrorCode.REQUIRED_FIELD_MISSING, "OBR-7 missing", segment="OBR", position=7
    )
    fields = ack_fields(ack.build(header, "AE", error))
    assert (fields["code"], fields["control_id"], fields["text"]) == (
        "AE",
        "MSG00001",
        "OBR-7 missing",
    )
    assert fields["error_code"] == "101"
    assert fields["error_location"] == "OBR^1^7"
    assert fields["error_message"] == "OBR-7 missing"
    err = next(
        line
        for line in ack.build(header, "AE", error).decode().split("\r")
        if line.startswith("ERR")
    )
    assert err.split("|")[1] == "OBR^1^7^101&Required field missing&HL70357"  # v2.3's ERR-1


def test_an_ack_for_an_unreadable_message_is_still_well_formed():
    error = HL7Error("AR", ErrorCode.SEGMENT_SEQUENCE, "the message must start with MSH")
    built = ack.build(Header(), "AR", error)
    parsed = hl7.parse(built.decode("ascii"))
    assert str(parsed.segment("MSA")(1)) == "AR"
    assert str(parsed.segment("MSA")(2)) == ""
    assert str(parsed.segment("ERR")(3)(1)(1)) == "100"


def test_the_ack_answers_in_the_message_charset():
    header = replace(peek_header(Oru(charset="8859/1").encode()), control_id="é1")
    built = ack.build(header, "AA")
    assert "é1".encode("latin-1") in built
    assert b"|8859/1" in built


def test_a_nul_byte_is_refused_before_anything_is_looked_up() -> None:
    # PostgreSQL refuses NUL in text: the fuzz found one in MSH-3 that reached a query.
    raw = Oru(sending_application="\x00ABWARE").encode()
    with pytest.raises(HL7Error) as caught:
        parse(raw)
    assert caught.value.code == ErrorCode.DATA_TYPE
    assert "NUL byte" in str(caught.value)


@given(st.text(alphabet="ab^~&\\ |", max_size=30))
def test_a_field_splits_the_same_with_or_without_separators_in_it(text: str) -> None:
    # The parser skips the splits when a field holds no separator: same structure.
    seps = Separators()
    general = [[component.split("&") for component in rep.split("^")] for rep in text.split("~")]
    assert _split_field(text, seps) == general
