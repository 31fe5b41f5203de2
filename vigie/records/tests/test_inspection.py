"""`inspect()`: the bad-input corpus every intake channel shares (issue 6).

Real files throughout: PDFs drawn with reportlab and armed with pypdf, not byte strings that
merely look like PDFs, so a check that only works on toy input fails here.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from pypdf.generic import (
    DictionaryObject,
)

from vigie.records.ingest_errors import InvalidDocument
from vigie.records.inspection import ContentReport, inspect
from vigie.records.testing import (
    ACTION_ATTACKS,
    VALID_PDF,
    pdf_with_document_javascript,
    pdf_with_embedded_file,
    pdf_with_javascript_in_object_stream,
    pdf_with_launch_action,
    pdf_with_link_action,
    pdf_with_open_action_javascript,
    pdf_with_page_open_javascript,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32


# --- what is accepted ------------------------------------------------------------------------


def test_it_accepts_a_plain_lab_report_pdf() -> None:
    report = inspect(VALID_PDF, "application/pdf")
    assert report == ContentReport("application/pdf", active_content=False, warnings=[])


def test_it_accepts_a_content_type_with_parameters_and_odd_case() -> None:
    assert inspect(VALID_PDF, "Application/PDF; charset=binary").content_type == "application/pdf"


@pytest.mark.parametrize(
    ("data", "content_type"), [(PNG, "image/png"), (JPEG, "image/jpeg")], ids=["png", "jpeg"]
)
def test_it_accepts_images_by_their_magic_bytes(data: bytes, content_type: str) -> None:
    assert inspect(data, content_type) == ContentReport(content_type)


# --- what is refused, with a message the sender can act on -----------------------------------


def test_it_refuses_a_pdf_cut_in_the_middle_as_truncated() -> None:
    with pytest.raises(InvalidDocument, match="truncated"):
        inspect(VALID_PDF[: len(VALID_PDF) // 2], "application/pdf")


def test_it_refuses_an_html_error_page_named_pdf_naming_its_first_bytes() -> None:
    page = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"
    with pytest.raises(InvalidDocument, match="not a application/pdf") as refused:
        inspect(page, "application/pdf")
    assert "<!DOCTYP" in str(refused.value)


@pytest.mark.parametrize("content_type", ["application/pdf", "image/png", "text/plain"])
def test_it_refuses_an_empty_file(content_type: str) -> None:
    with pytest.raises(InvalidDocument, match="empty"):
        inspect(b"", content_type)


@pytest.mark.parametrize("content_type", ["text/html", "image/svg+xml", "application/zip", ""])
def test_it_refuses_an_unsupported_type(content_type: str) -> None:
    with pytest.raises(InvalidDocument, match="unsupported content type"):
        inspect(VALID_PDF, content_type)


def test_it_refuses_a_png_declared_as_jpeg() -> None:
    with pytest.raises(InvalidDocument, match="not a image/jpeg"):
        inspect(PNG, "image/jpeg")


def test_it_refuses_a_pdf_whose_structure_is_garbage() -> None:
    junk = b"%PDF-1.7\n" + b"this is not a pdf body " * 20 + b"\n%%EOF\n"
    with pytest.raises(InvalidDocument, match="PDF"):
        inspect(junk, "application/pdf")


# --- active content: stored, but flagged (served as a download only) -------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (pdf_with_document_javascript, "javascript"),
        (pdf_with_page_open_javascript, "javascript"),
        (pdf_with_open_action_javascript, "javascript"),
        (pdf_with_launch_action, "launch_action"),
        (pdf_with_embedded_file, "embedded_file"),
        (pdf_with_javascript_in_object_stream, "javascript"),
    ],
    ids=[
        "document_js",
        "page_open_js",
        "open_action_js",
        "launch",
        "embedded_file",
        "js_in_object_stream",
    ],
)
def test_active_content_is_accepted_but_flagged(build: object, expected: str) -> None:
    data = build()  # type: ignore[operator]
    report = inspect(data, "application/pdf")
    assert report.active_content
    assert expected in report.warnings
    assert report.warnings == sorted(set(report.warnings))


def test_javascript_hidden_in_a_compressed_object_stream_is_still_found() -> None:
    data = pdf_with_javascript_in_object_stream()
    # The premise: a byte scan alone cannot see it.
    assert b"JavaScript" not in data
    assert b"/JS" not in data
    assert len(PdfReader(io.BytesIO(data)).pages) == 1
    assert inspect(data, "application/pdf").warnings == ["javascript"]


def test_javascript_behind_an_escaped_name_is_found() -> None:
    # /J#61vaScript is /JavaScript for a PDF reader; a byte pattern does not match it.
    data = pdf_with_open_action_javascript().replace(b"/JavaScript", b"/J#61vaScript")
    assert b"/JavaScript" not in data
    report = inspect(data, "application/pdf")
    assert report.active_content
    assert "javascript" in report.warnings


# --- never anything but an answer ------------------------------------------------------------


def _inspect_answers(data: bytes, content_type: str = "application/pdf") -> None:
    # Any other exception escapes and fails the test: that is the point.
    try:
        report = inspect(data, content_type)
    except InvalidDocument as exc:
        refusal = str(exc)
    else:
        assert isinstance(report, ContentReport)
        return
    assert refusal, "a refusal must say why"


FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=4096),
        # Past the magic and EOF checks, so the bytes reach the PDF parser itself.
        st.binary(max_size=2048).map(lambda body: b"%PDF-1.7\n" + body + b"\n%%EOF\n"),
    ),
    content_type=st.sampled_from(["application/pdf", "image/png", "image/jpeg", "text/html"]),
)
def test_arbitrary_bytes_get_a_report_or_a_refusal(data: bytes, content_type: str) -> None:
    _inspect_answers(data, content_type)


_ARMED = [VALID_PDF, pdf_with_document_javascript(), pdf_with_javascript_in_object_stream()]


@FUZZ
@given(
    base=st.sampled_from(_ARMED),
    cut=st.integers(min_value=0, max_value=len(max(_ARMED, key=len))),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=8),
)
def test_mutated_pdfs_get_a_report_or_a_refusal(
    base: bytes, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(base)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    # Keep the tail when cutting from the front, so the EOF check does not hide the parser.
    mutated = bytes(data[: max(cut, 1)]) if cut % 2 else b"%PDF-1.4\n" + bytes(data[cut:])
    _inspect_answers(mutated)


def test_a_complete_pdf_padded_with_a_trailing_comment_is_accepted() -> None:
    # Some producers pad files; a comment after %%EOF is not a cut transfer.
    report = inspect(VALID_PDF + b"%" + b"x" * 20_000 + b"\n", "application/pdf")
    assert report.content_type == "application/pdf"


def test_an_incremental_update_cut_after_the_first_eof_is_refused() -> None:
    cut = VALID_PDF + b"\n5 0 obj\n<< /Type /Annot /Subtype /Link"
    with pytest.raises(InvalidDocument, match="truncated"):
        inspect(cut, "application/pdf")


@pytest.mark.parametrize(("action", "expected"), ACTION_ATTACKS.values(), ids=ACTION_ATTACKS)
def test_attack_a_link_that_leaves_the_document_is_flagged(
    action: DictionaryObject, expected: str
) -> None:
    report = inspect(pdf_with_link_action(action), "application/pdf")
    assert report.active_content
    assert expected in report.warnings


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (b"<</Type/Action/S/URI/URI(https://evil.example/)>>", "uri_action"),
        (b"<</Type/Action/S/GoToR/F(//evil.example/share/x.pdf)/D[0/Fit]>>", "remote_goto"),
    ],
    ids=["uri", "gotor"],
)
def test_attack_an_action_hidden_in_a_compressed_object_stream_is_flagged(
    action: bytes, expected: str
) -> None:
    report = inspect(pdf_with_javascript_in_object_stream(action), "application/pdf")
    assert report.active_content
    assert expected in report.warnings


def test_attack_an_object_pypdf_cannot_read_is_flagged_never_trusted() -> None:
    # The OpenAction's dictionary is left open: pypdf gives up on that object (and would have
    # reported the file clean), while a lenient viewer may still read and run it.
    data = pdf_with_javascript_in_object_stream(b"<</Type/Action/S/JavaScript/JS(x)")
    report = inspect(data, "application/pdf")
    assert report.active_content
    assert "unparsed_content" in report.warnings
