"""What a received file really is, before it is stored: every intake path asks `inspect()`.

A lab's system may send an empty file, half a file, an HTML error page named `.pdf`, or a
PDF that runs JavaScript when opened. The first three are refused with a message the
sender's integrator can act on; the last is stored (it is still the patient's record) but
flagged, and the portal then offers it as a download only, never rendered inside its pages.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vigie.records.ingest_errors import InvalidDocument
from vigie.records.plain_pdf import plain_pdf_is_clean

if TYPE_CHECKING:
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

# Lab messages kept as received; their values are sealed beside them (`records.results`).
HL7_V2 = "application/hl7-v2"
# An HPRIM Santé file (one patient's part of it), in the charset it came in: its channel's
# parser has read it whole before it gets here, so no magic bytes are asked of it.
HPRIM = "application/x-hprim-sante"
LAB_MESSAGE_TYPES = frozenset({HL7_V2, HPRIM})
# What a sender may upload as a file (REST, FHIR, folder); lab messages come through
# their channels, which read the values first.
UPLOAD_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg"})
ACCEPTED_TYPES = UPLOAD_TYPES | LAB_MESSAGE_TYPES
_MAGIC = {
    # The MSH segment opens every HL7 v2 message (after blank lines some senders put first).
    HL7_V2: (b"MSH",),
    HPRIM: (b"",),
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}
# PDF names that make a document act on its own when opened or clicked.
_ACTIVE_NAMES = {
    "/JavaScript": "javascript",
    "/JS": "javascript",
    "/Launch": "launch_action",
    "/EmbeddedFile": "embedded_file",
    "/EmbeddedFiles": "embedded_file",
    "/RichMedia": "rich_media",
    "/XFA": "xfa_form",
    "/SubmitForm": "submit_form",
    "/ImportData": "import_data",
    # Actions that leave the document: a web address, another file (a UNC path hands the
    # reader's Windows credentials to whoever serves it), a file embedded in another.
    "/URI": "uri_action",
    "/GoToR": "remote_goto",
    "/GoToE": "embedded_goto",
}
# What pypdf could not read was not checked, so it is not trusted: download only.
UNPARSED = "unparsed_content"
_MAX_OBJECTS = 200_000
# An active name followed by a delimiter (so /JS does not match /JSomething).
_RAW_NAME_RE = re.compile(
    rb"("
    + b"|".join(re.escape(n.encode()) for n in sorted(_ACTIVE_NAMES, key=len, reverse=True))
    + rb")(?=[\s(<\[/>])"
)
_ACTIVE_NAME_BYTES = frozenset(name.encode() for name in _ACTIVE_NAMES)


@dataclass(frozen=True)
class ContentReport:
    content_type: str
    active_content: bool = False
    warnings: list[str] = field(default_factory=list)


def inspect(data: bytes, content_type: str) -> ContentReport:
    """Refuse what is not what it claims to be; report what may act on its own."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if not data:
        raise InvalidDocument("the file is empty (0 bytes)")
    if content_type not in ACCEPTED_TYPES:
        raise InvalidDocument(
            f"unsupported content type {content_type!r}; send one of "
            f"{', '.join(sorted(ACCEPTED_TYPES))}"
        )
    start = data.lstrip() if content_type == HL7_V2 else data
    if not start.startswith(_MAGIC[content_type]):
        raise InvalidDocument(
            f"the file is not a {content_type} (its first bytes are {data[:8]!r}); "
            "check that the sending system attaches the document itself, not an error page"
        )
    if content_type != "application/pdf":
        return ContentReport(content_type)
    return _inspect_pdf(data)


def _inspect_pdf(data: bytes) -> ContentReport:
    if _truncated(data):
        raise InvalidDocument(
            "the PDF is truncated (no %%EOF at its end): the transfer was probably cut; "
            "send it again"
        )
    # The plainest files (most of what labs send) are read without pypdf, at a tenth of its
    # CPU: the structure is then known to hold no active name, and the raw scan is the rest.
    # Anything the plain reader does not vouch for goes to pypdf below, unchanged.
    if plain_pdf_is_clean(data, _ACTIVE_NAME_BYTES):
        found = _raw_scan(data)
        return ContentReport("application/pdf", active_content=bool(found), warnings=sorted(found))
    return _inspect_with_pypdf(data)


def _inspect_with_pypdf(data: bytes) -> ContentReport:
    """The full reading: any PDF pypdf can open, object streams and escaped names included."""
    # Imported here, on the first file the plain reader declines: importing pypdf was a
    # sixth of a granian worker's start (issue 19: cold start).
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = len(reader.pages)
    except Exception as exc:
        # pypdf on hostile bytes raises more than PdfReadError: NotImplementedError for an
        # unknown filter name, IndexError, zlib.error, OverflowError, LimitReachedError...
        # Whatever the parser trips on, the sender gets a refusal, never a traceback.
        raise InvalidDocument(f"the PDF cannot be read ({type(exc).__name__}: {exc})") from None
    if pages == 0:
        raise InvalidDocument("the PDF has no page")
    found = _active_features(reader) | _raw_scan(data)
    return ContentReport("application/pdf", active_content=bool(found), warnings=sorted(found))


def _truncated(data: bytes) -> bool:
    """No %%EOF, or something other than comments and blank space after the last one.

    A cut transfer ends in the middle of an object (or of an incremental update after an
    earlier %%EOF); some producers pad a complete file with a trailing comment, which is
    fine.
    """
    end = data.rfind(b"%%EOF")
    if end < 0:
        return True
    tail = data[end + len(b"%%EOF") :]
    return any(line.strip() and not line.lstrip().startswith(b"%") for line in tail.splitlines())


def _raw_scan(data: bytes) -> set[str]:
    # Names in uncompressed objects; compressed object streams are walked by pypdf below.
    # One pass of one expression: a scan per name and delimiter cost 10% of REST ingest.
    return {_ACTIVE_NAMES[m.group(1).decode()] for m in _RAW_NAME_RE.finditer(data)}


def _active_features(reader: PdfReader) -> set[str]:
    from pypdf.generic import (
        ArrayObject,
        DictionaryObject,
        IndirectObject,
        NameObject,
        NullObject,
    )

    found: set[str] = set()
    seen: set[int] = set()
    stack: list[object] = [reader.trailer]
    while stack:
        if len(seen) >= _MAX_OBJECTS:
            found.add(UNPARSED)  # the rest was never looked at
            break
        item = stack.pop()
        if isinstance(item, IndirectObject):
            if item.idnum in seen:
                continue
            seen.add(item.idnum)
            try:
                resolved = item.get_object()
            except Exception:  # a damaged object must not hide the rest of the file
                logger.debug("unreadable PDF object %s", item, exc_info=True)
                resolved = None
            # pypdf answers null for an object it gave up on (and only warns): a lenient
            # viewer may still read what is there, so the file is not trusted.
            if resolved is None or isinstance(resolved, NullObject):
                found.add(UNPARSED)
                continue
            item = resolved
        if isinstance(item, DictionaryObject):
            for key, value in item.items():
                if key in _ACTIVE_NAMES:
                    found.add(_ACTIVE_NAMES[key])
                if isinstance(value, NameObject) and value in _ACTIVE_NAMES:
                    found.add(_ACTIVE_NAMES[value])
                stack.append(value)
        elif isinstance(item, ArrayObject):
            stack.extend(item)
    return found
