"""The plain-PDF reader against pypdf: the same verdict on every file, or it stays silent.

`inspect()` skips pypdf when `plain_pdf_is_clean()` vouches for a file (issue 19: 3.7 ms of
CPU saved per 200 KB lab report). The differential tests here run every file twice, once as
shipped and once with the plain reader switched off, and require the same answer: the same
refusal message or the same report. The files: the hostile corpus of test_inspection.py,
ReportLab documents, generated PDFs whose structure hypothesis chooses (active and escaped
names, dangling and wrong-generation references, comments, nested strings, broken page
trees), and byte mutations of all of them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from vigie.records import inspection
from vigie.records import testing as corpus
from vigie.records.ingest_errors import InvalidDocument
from vigie.records.plain_pdf import plain_pdf_is_clean

ACTIVE = inspection._ACTIVE_NAME_BYTES


# pypdf's messages may name an object by its repr, which holds the reader's memory address
# (`IndirectObject(3, 0, 140234…)`, `at 0x7f…`): two runs over the same bytes differ there.
_ADDRESSES = re.compile(r"(IndirectObject\(\d+, \d+), \d+\)|0x[0-9a-f]{6,}")


def _answer(data: bytes) -> tuple[str, Any]:
    try:
        report = inspection.inspect(data, "application/pdf")
    except InvalidDocument as exc:
        return ("refused", _ADDRESSES.sub(lambda m: (m.group(1) or "") + "…", str(exc)))
    return ("report", report)


def both_verdicts(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(inspect as shipped, inspect with pypdf alone)."""
    shipped = _answer(data)
    with monkeypatch.context() as patched:
        patched.setattr(inspection, "plain_pdf_is_clean", lambda *_: None)
        pypdf_only = _answer(data)
    return shipped, pypdf_only


def reportlab_pdf(pages: int = 3, compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=int(compress))
    for number in range(pages):
        pdf.drawString(72, 800, f"Hémoglobine 13.{number} g/dL — page {number + 1}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


PLAIN = [
    corpus.VALID_PDF,
    reportlab_pdf(1),
    reportlab_pdf(12, compress=False),
    reportlab_pdf(5, compress=True),
    corpus.VALID_PDF + b"%" + b"x" * 20_000 + b"\n",
]

HOSTILE: list[Callable[[], bytes]] = [
    corpus.pdf_with_document_javascript,
    corpus.pdf_with_page_open_javascript,
    corpus.pdf_with_open_action_javascript,
    corpus.pdf_with_launch_action,
    corpus.pdf_with_embedded_file,
    corpus.pdf_with_javascript_in_object_stream,
    lambda: corpus.pdf_with_javascript_in_object_stream(b"<</Type/Action/S/JavaScript/JS(x)"),
    lambda: corpus.pdf_with_javascript_in_object_stream(
        b"<</Type/Action/S/URI/URI(https://evil.example/)>>"
    ),
    lambda: corpus.pdf_with_open_action_javascript().replace(b"/JavaScript", b"/J#61vaScript"),
    *[
        (lambda action=action: corpus.pdf_with_link_action(action))
        for action, _ in corpus.ACTION_ATTACKS.values()
    ],
]


def test_it_reads_what_labs_send_without_pypdf() -> None:
    # The premise of the speed-up: ReportLab's output (what the bench and most labs send).
    for data in PLAIN:
        assert plain_pdf_is_clean(data, ACTIVE) is True


@pytest.mark.parametrize("data", PLAIN, ids=range(len(PLAIN)))
def test_plain_files_get_the_same_verdict(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped, pypdf_only = both_verdicts(data, monkeypatch)
    assert shipped == pypdf_only
    assert shipped[0] == "report"


@pytest.mark.parametrize("build", HOSTILE, ids=range(len(HOSTILE)))
def test_attack_the_hostile_corpus_keeps_every_verdict(
    build: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = build()
    # None of these may be vouched for: each carries an action, an escaped name or an object
    # stream, which only pypdf's walk judges.
    assert plain_pdf_is_clean(data, ACTIVE) is None
    shipped, pypdf_only = both_verdicts(data, monkeypatch)
    assert shipped == pypdf_only
    assert shipped[0] == "report"
    assert shipped[1].active_content


def test_a_generated_plain_file_is_vouched_for_and_one_with_an_action_is_not() -> None:
    # The generator and the plain reader agree on what "plain" is, or the differential tests
    # below would only ever exercise pypdf.
    plain = generated_pdf([{b"/Foo": [b"1 0 R", b"(a)", b"<41>", b"-.5"]}], [{b"/Rotate": b"0"}])
    assert plain_pdf_is_clean(plain, ACTIVE) is True
    armed = generated_pdf([], [{b"/AA": {b"/O": {b"/S": b"/JavaScript", b"/JS": b"(x)"}}}])
    assert plain_pdf_is_clean(armed, ACTIVE) is None


def test_attack_an_active_name_before_a_comment_the_raw_scan_misses_goes_to_pypdf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "/S/JavaScript%..." : pypdf reads the name /JavaScript, the raw scan's pattern does not
    # (no delimiter it knows follows). Only the plain reader's own name check sends it on.
    data = generated_pdf([], [{b"/AA": {b"/O": {b"/S": b"/JavaScript%c\n", b"/Foo": b"1"}}}])
    assert inspection._raw_scan(data) == set()
    assert plain_pdf_is_clean(data, ACTIVE) is None
    shipped, pypdf_only = both_verdicts(data, monkeypatch)
    assert shipped == pypdf_only
    assert shipped[1].warnings == ["javascript"]


def test_attack_an_action_named_only_with_escapes_goes_to_pypdf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /U#52I is /URI to every reader; no byte pattern sees it.
    data = generated_pdf([], [{b"/A": {b"/S": b"/U#52I", b"/U#52I": b"(https://evil.example/)"}}])
    assert inspection._raw_scan(data) == set()
    assert plain_pdf_is_clean(data, ACTIVE) is None
    shipped, pypdf_only = both_verdicts(data, monkeypatch)
    assert shipped == pypdf_only
    assert shipped[1].warnings == ["uri_action"]


# --- generated PDFs: hypothesis chooses the structure --------------------------------------

# Safe names weighted up, so that about half the generated files reach the plain reader's
# verdict (the rest are pypdf's: the test then checks that the plain reader stayed silent).
SAFE_NAMES = [b"/Type", b"/Foo", b"/S", b"/A", b"/Annots", b"/Resources", b"/Font", b"/Rotate"]
NAMES = [
    *SAFE_NAMES * 6,
    b"/Type",
    b"/Foo",
    b"/S",
    b"/A",
    b"/JS",
    b"/JavaScript",
    b"/URI",
    b"/Launch",
    b"/J#61vaScript",
    b"/ObjStm",
    b"/AA",
    b"/Annots",
    b"/Kids",
]


def _serialise(value: Any, space: bytes) -> bytes:
    if isinstance(value, dict):
        inner = b"".join(k + space + _serialise(v, space) + space for k, v in value.items())
        return b"<<" + space + inner + b">>"
    if isinstance(value, list):
        return b"[" + space.join(_serialise(v, space) for v in value) + b"]"
    return bytes(value)


def generated_pdf(
    extra: list[dict[bytes, Any]],
    page_extras: list[dict[bytes, Any]],
    *,
    space: bytes = b" ",
    catalog_extra: dict[bytes, Any] | None = None,
) -> bytes:
    """A classic PDF: 1 catalog, 2 page tree, 3.. pages, then `extra` objects."""
    pages = page_extras or [{}]
    first_page = 3
    first_extra = first_page + len(pages)
    objects: list[dict[bytes, Any]] = [
        {b"/Type": b"/Catalog", b"/Pages": b"2 0 R", **(catalog_extra or {})},
        {
            b"/Type": b"/Pages",
            b"/Kids": [f"{first_page + i} 0 R".encode() for i in range(len(pages))],
            b"/Count": str(len(pages)).encode(),
        },
        *[
            {b"/Type": b"/Page", b"/Parent": b"2 0 R", b"/MediaBox": [b"0", b"0", b"595", b"842"]}
            | page
            for page in pages
        ],
        *extra,
    ]
    assert first_extra + len(extra) - 1 == len(objects)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, value in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + _serialise(value, space) + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _values(max_ref: int) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.sampled_from(NAMES),
        st.integers(-5, 99999).map(lambda n: str(n).encode()),
        st.sampled_from([b"1.5", b"-.25", b"true", b"false", b"null", b"<4142>", b"()"]),
        st.binary(max_size=12).map(
            lambda b: b"(" + b.replace(b"\\", b"").replace(b"(", b"").replace(b")", b"") + b")"
        ),
        st.sampled_from([b"(a(b)c)", b"(x\\)y)", b"(%c)"]),
        # Edges of pypdf's string, number and name readers.
        st.sampled_from(
            [
                b"(\\777)",
                b"(\\q)",
                b"(a\\\nb)",
                b"(\xfe\xff\x00)",
                b"<414>",
                b"<FEFF0041>",
                b"+.5",
                b"5.",
                b"99999999999999999999999",
                b"/",
            ]
        ),
        st.tuples(st.integers(1, max_ref + 1), st.sampled_from([0] * 12 + [1])).map(
            lambda r: f"{r[0]} {r[1]} R".encode()
        ),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(NAMES), inner, max_size=4),
        ),
        max_leaves=12,
    )


@st.composite
def structures(draw: st.DrawFn) -> bytes:
    n_pages = draw(st.integers(1, 3))
    n_extra = draw(st.integers(0, 4))
    max_ref = 2 + n_pages + n_extra
    dicts = st.dictionaries(st.sampled_from(NAMES), _values(max_ref), max_size=4)
    extra = draw(st.lists(dicts, min_size=n_extra, max_size=n_extra))
    page_extras = draw(st.lists(dicts, min_size=n_pages, max_size=n_pages))
    catalog_extra = draw(dicts.filter(lambda d: b"/Type" not in d and b"/Kids" not in d))
    space = draw(st.sampled_from([b" ", b"\n", b"\r\n", b"  "]))
    return generated_pdf(extra, page_extras, space=space, catalog_extra=catalog_extra)


DIFFERENTIAL = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@DIFFERENTIAL
@given(data=structures())
def test_generated_structures_get_the_same_verdict(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped, pypdf_only = both_verdicts(data, monkeypatch)
    assert shipped == pypdf_only


@DIFFERENTIAL
@given(
    base=st.one_of(st.sampled_from(PLAIN[:4]), structures()),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.sampled_from(["flip", "insert", "delete"]),
            st.sampled_from(
                [b" ", b"/JS ", b"#", b"%", b"(", b")", b"<<", b">>", b"[", b"]", b"\n", b"0", b"R"]
            ),
            st.integers(1, 255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_files_get_the_same_verdict(
    base: bytes, edits: list[tuple[int, str, bytes, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytearray(base)
    for position, how, text, mask in edits:
        at = position % len(data)
        if how == "flip":
            data[at] ^= mask
        elif how == "insert":
            data[at:at] = text
        else:
            del data[at : at + 1 + mask % 8]
    mutated = bytes(data)
    assume(mutated.startswith(b"%PDF-"))
    shipped, pypdf_only = both_verdicts(mutated, monkeypatch)
    assert shipped == pypdf_only
