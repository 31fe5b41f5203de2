"""Lab results as data: the contract (canonical, strict JSON) and how ingest seals it."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from vigie import vault
from vigie.records import keys
from vigie.records.ingest import DocumentMeta, InvalidDocument
from vigie.records.models import Document, PendingDocument, SealedResults, results_label
from vigie.records.receive import Sender, attach, receive
from vigie.records.results import (
    Attachment,
    Observation,
    ResultGroup,
    ResultSet,
    ResultsFormatError,
    parse_number,
    parse_range,
)
from vigie.records.results_store import documents_with_results, open_attachment, open_results
from vigie.records.testing import (
    lab_report_pdf,
    make_lab_document,
    make_patient,
    sample_results,
)

HL7 = b"MSH|^~\\&|LAB|LAB|||20261102||ORU^R01|77|P|2.5\rPID|||X\r"


# --- the contract -----------------------------------------------------------------------


def test_it_reads_numbers_and_ranges_as_labs_write_them() -> None:
    assert parse_number("5,9") == Decimal("5.9")
    assert parse_number(" 12 ") == Decimal("12")
    assert parse_number("5.10") == Decimal("5.10")
    for text in ("<0.5", "1/128", "positif", "", "1e5", "NaN", "5.2.1"):
        assert parse_number(text) is None, text
    assert parse_range("3.5-5.0") == (Decimal("3.5"), Decimal("5.0"))
    assert parse_range("[3,5 ; 5,0]") == (Decimal("3.5"), Decimal("5.0"))
    assert parse_range("3.5 à 5") == (Decimal("3.5"), Decimal("5"))
    assert parse_range("<5") == (None, Decimal("5"))
    assert parse_range(">= 60") == (Decimal("60"), None)
    assert parse_range("négatif") == (None, None)


def test_it_round_trips_through_canonical_json() -> None:
    results = sample_results()
    data = results.to_json()
    assert ResultSet.from_json(data) == results
    # Canonical: sorted keys, no spaces, numbers as strings (no float ever rounds a value).
    loaded = json.loads(data)
    assert list(loaded) == sorted(loaded)
    assert b", " not in data
    assert b": " not in data
    assert loaded["groups"][0]["observations"][0]["numeric"] == "5.9"
    assert ResultSet.from_json(data).to_json() == data


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d.update(extra=1), "unknown"),
        (lambda d: d.pop("source"), "missing"),
        (lambda d: d.update(schema="vigie.lab-results/2"), "schema"),
        (lambda d: d["groups"][0]["observations"][0].update(numeric="abc"), "not a number"),
        (lambda d: d["groups"][0]["observations"][0].update(numeric=5.9), "strings"),
        (lambda d: d["groups"][0]["observations"][0].update(label=3), "string"),
        (lambda d: d["groups"][0]["observations"][0].update(observed_at="yesterday"), "ISO"),
        (lambda d: d["groups"][0]["observations"][0].update(code="", label=""), "code or"),
        (lambda d: d["groups"][0].update(observations={}), "list"),
        (lambda d: d.update(attachment={"content_type": "x/y", "size": -1, "sha256": ""}), "size"),
    ],
)
def test_it_refuses_a_result_set_that_is_not_exactly_one(mutate: object, why: str) -> None:
    data = json.loads(sample_results().to_json())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ResultsFormatError, match=why):
        ResultSet.from_json(json.dumps(data).encode())


def test_it_refuses_floats_and_junk_bytes() -> None:
    text = sample_results().to_json().replace(b'"numeric":"5.9"', b'"numeric":5.9')
    with pytest.raises(ResultsFormatError, match="strings"):
        ResultSet.from_json(text)
    with pytest.raises(ResultsFormatError):
        ResultSet.from_json(b"\xff\xfe")
    with pytest.raises(ResultsFormatError):
        ResultSet.from_json(b"[]")


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
_decimal = st.decimals(allow_nan=False, allow_infinity=False, places=3)
_moment = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1))


@st.composite
def _observations(draw: st.DrawFn) -> Observation:
    return Observation(
        code=draw(_text.filter(str.strip)),
        code_system=draw(_text),
        label=draw(_text),
        value=draw(st.text(max_size=60).filter(lambda t: "\x00" not in t and t.isprintable())),
        numeric=draw(st.none() | _decimal),
        unit=draw(_text),
        reference_range=draw(_text),
        low=draw(st.none() | _decimal),
        high=draw(st.none() | _decimal),
        flag=draw(st.sampled_from(["", "H", "L", "HH", "LL", "A", "N"])),
        status=draw(st.sampled_from(["", "F", "P", "C"])),
        observed_at=draw(st.none() | _moment),
        comments=tuple(draw(st.lists(_text, max_size=2))),
    )


@given(
    observations=st.lists(_observations(), max_size=4),
    source=_text,
    when=st.none() | _moment,
)
@settings(max_examples=60, deadline=None)
def test_any_result_set_survives_its_json(
    observations: list[Observation], source: str, when: datetime | None
) -> None:
    results = ResultSet(
        source=source,
        groups=(
            ResultGroup(code="G", label="g", observed_at=when, observations=tuple(observations)),
        ),
    )
    assert ResultSet.from_json(results.to_json()) == results


@given(st.binary(max_size=200))
@settings(max_examples=100, deadline=None)
def test_any_bytes_load_as_a_result_set_or_a_clear_refusal(data: bytes) -> None:
    with contextlib.suppress(ResultsFormatError):
        ResultSet.from_json(data)


# --- sealed at ingest -------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_the_message_as_received_and_the_values_sealed_beside_it(
    vault_home: Path,
) -> None:
    patient = make_patient()
    results = sample_results()
    document = make_lab_document(patient, results, message=HL7)
    from vigie.records.content import stream_verified

    assert b"".join(stream_verified(document)) == HL7
    assert document.content_type == "application/hl7-v2"
    assert open_results(document) == results
    assert documents_with_results([document.pk, "nope"]) == {document.pk}
    assert open_attachment(document) is None


@pytest.mark.django_db
def test_attack_no_code_or_value_sits_in_clear_in_the_database(vault_home: Path) -> None:
    """A database dump must not tell which test a patient had, nor its value."""
    patient = make_patient()
    make_lab_document(
        patient, sample_results(potassium="7.77", flag="HH"), message=HL7.replace(b"77", b"00")
    )
    row = SealedResults.objects.get()
    dump = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
        for v in SealedResults.objects.values_list(
            "id", "kek_id", "wrapped_key", "results", "attachment"
        ).get()
    )
    for secret in (b"2823-3", b"7.77", b"Potassium", b"mmol/L", b"Limpide", b"CREA"):
        assert secret not in dump, secret
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM records_sealedresults")
        every_column = repr(cursor.fetchall()).encode()
    assert b"7.77" not in every_column
    assert b"2823-3" not in every_column
    assert row.id.startswith("results/")


@pytest.mark.django_db
def test_attack_results_moved_to_another_document_do_not_open(vault_home: Path) -> None:
    patient = make_patient()
    first = make_lab_document(patient, sample_results("5.9"))
    second = make_lab_document(patient, sample_results("3.1", flag=""))
    a = SealedResults.objects.get(pk=results_label(first.pk))
    b = SealedResults.objects.get(pk=results_label(second.pk))
    SealedResults.objects.filter(pk=b.pk).update(
        kek_id=a.kek_id, wrapped_key=a.wrapped_key, results=a.results
    )
    with pytest.raises(vault.VaultError):
        open_results(second)


@pytest.mark.django_db
def test_it_keeps_the_embedded_pdf_beside_the_values(vault_home: Path) -> None:
    pdf = lab_report_pdf()
    results = sample_results().with_attachment(Attachment.of("application/pdf", pdf))
    document = make_lab_document(make_patient(), results, attachment=pdf)
    assert open_attachment(document) == ("application/pdf", pdf)
    assert open_results(document) == results


@pytest.mark.django_db
def test_it_refuses_an_attachment_its_results_do_not_describe(vault_home: Path) -> None:
    pdf = lab_report_pdf()
    described = sample_results().with_attachment(Attachment.of("application/pdf", b"other"))
    with pytest.raises(InvalidDocument, match="attachment"):
        make_lab_document(make_patient(), described, attachment=pdf)
    with pytest.raises(InvalidDocument, match="attachment"):
        make_lab_document(make_patient(), sample_results(), attachment=pdf)
    # Nothing half-stored: no row, no results, no blob.
    assert not Document.objects.exists()
    assert not SealedResults.objects.exists()
    assert not list((vault_home / "blobs").rglob("*.blob"))


@pytest.mark.django_db
def test_a_reconciled_document_keeps_its_results(vault_home: Path) -> None:
    from vigie.accounts.testing import make_user

    results = sample_results()
    meta = DocumentMeta(
        kind="lab_result",
        title="Ionogramme",
        clinical_date=results.clinical_date,  # type: ignore[arg-type]
        source_system="LABO-TEST",
        content_type="application/hl7-v2",
    )
    received = receive(
        Sender(ins=None, ipp="999", ipp_source="LABO-TEST", family_name="X"),
        meta,
        HL7,
        channel="hl7",
        results=results,
    )
    assert received.pending is not None
    patient = make_patient()
    document = attach(
        PendingDocument.objects.get(pk=received.pending.pk), patient, by=make_user("admin.r")
    )
    assert open_results(document) == results


@pytest.mark.django_db
def test_it_refuses_an_hl7_message_without_its_values(vault_home: Path) -> None:
    meta = DocumentMeta(
        kind="lab_result",
        title="ORU",
        clinical_date=datetime(2026, 1, 1).date(),
        source_system="LABO-TEST",
        content_type="application/hl7-v2",
    )
    patient = make_patient()
    with pytest.raises(InvalidDocument, match="its own channel"):
        receive(Sender(ins=patient.ins), meta, HL7, channel="rest")
    hprim = replace(meta, content_type="application/x-hprim-sante")
    with pytest.raises(InvalidDocument, match="its own channel"):
        receive(Sender(ins=patient.ins), hprim, b"REF\nDURAND\n", channel="folder")
    with pytest.raises(InvalidDocument, match="not a application/hl7-v2"):
        receive(Sender(ins=patient.ins), meta, b"PID|x", channel="hl7", results=sample_results())


@pytest.mark.django_db
def test_rotation_rewraps_the_sealed_results_too(vault_home: Path) -> None:
    document = make_lab_document(make_patient(), sample_results())
    old = vault.get_keyring().active_id
    result = keys.rotate()
    assert result.rewrapped == 2  # the message's data key and the results'
    keys.remove_key(old)
    assert SealedResults.objects.get().kek_id == result.new_kek_id
    assert open_results(Document.objects.get(pk=document.pk)) == sample_results()


def test_a_changed_observation_is_a_different_result_set() -> None:
    results = sample_results()
    group = results.groups[0]
    changed = replace(
        results,
        groups=(replace(group, observations=(replace(group.observations[0], value="6.0"),)),),
    )
    assert changed.to_json() != results.to_json()
    assert io.BytesIO(results.to_json()).read() == results.to_json()


@pytest.mark.django_db
def test_an_hprim_file_is_kept_as_received_with_its_results(vault_home: Path) -> None:
    # The contract the HPRIM channel uses: the file's bytes as they came (any charset), the
    # parsed results beside them; free text only is a result set of comments.
    raw = "ANALYSES\r\nDURAND\r\nCamille\r\n".encode("cp850")
    free_text = ResultSet(source="LABO-HPRIM", groups=(), comments=("Compte rendu libre",))
    document = make_lab_document(
        make_patient(), free_text, message=raw, content_type="application/x-hprim-sante"
    )
    from vigie.records.content import stream_verified

    assert b"".join(stream_verified(document)) == raw
    assert open_results(document) == free_text


_LINE_FIELDS = (
    "code",
    "code_system",
    "label",
    "unit",
    "reference_range",
    "status",
    "value_type",
    "second_unit",
    "flag",
)
_TEXT_FIELDS = ("value", "second_value", "comment")
_LIMITS = {**dict.fromkeys(_LINE_FIELDS, 500), "flag": 16, **dict.fromkeys(_TEXT_FIELDS, 20_000)}
# Characters any field may hold, and those only a free text may (a line break).
_CLEAN = "aÉ \t"
_BAD = ["\n", "\r", "\x00", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\x7f"]


@settings(max_examples=1000, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {
            **{name: st.text(alphabet=_CLEAN, max_size=6) for name in _LINE_FIELDS},
            **{name: st.text(alphabet=_CLEAN + "\n\r", max_size=6) for name in _TEXT_FIELDS},
        }
    ),
    # At most one thing wrong, so that neither check can hide behind another field's fault:
    # a character somewhere, or a field at its limit or one past it.
    defect=st.one_of(
        st.none(),
        st.tuples(st.sampled_from(_LINE_FIELDS + _TEXT_FIELDS), st.sampled_from(_BAD)),
        st.tuples(st.sampled_from(_LINE_FIELDS + _TEXT_FIELDS), st.sampled_from([0, 1])),
    ),
    comments=st.integers(min_value=0, max_value=2),
)
def test_the_two_search_check_accepts_exactly_what_the_field_by_field_check_accepts(
    values: dict[str, str], defect: tuple[str, str | int] | None, comments: int
) -> None:
    """`Observation._plainly_valid` (two searches) stands in for `_check_each_field` (one
    per field, which names the culprit): it must accept an observation exactly when every
    field passes its own check, or a control character would slip into sealed results."""
    if defect is not None:
        name, what = defect
        if isinstance(what, str):
            values[name] = values[name][:2] + what + values[name][2:]
        else:
            values[name] = "x" * (_LIMITS[name] + what)
    observation = object.__new__(Observation)
    comment = values.pop("comment")
    for name, value in {**values, "comments": (comment,) * comments}.items():
        object.__setattr__(observation, name, value)
    try:
        observation._check_each_field()
    except ResultsFormatError:
        each_accepts = False
    else:
        each_accepts = True
    assert observation._plainly_valid() is each_accepts
