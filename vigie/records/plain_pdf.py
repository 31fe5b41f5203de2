"""A cheap reading of the plainest PDFs, so that `inspect()` need not open them with pypdf.

pypdf spends ~4 ms of CPU opening a 200 KB lab report (its tokenizer reads byte by byte);
that was a quarter of an ingest. Most files a lab sends are as plain as a PDF gets: one
classic cross-reference table, no object streams, no compressed xref, no encryption, no
incremental update, no escaped names. For those, this module checks the whole structure
with a handful of regular expressions and answers "pages present, every object readable,
no active name in the structure", which is all `inspect()` needs from pypdf.

It never gives a verdict it is unsure of: anything it does not recognise exactly (a comment
inside an object, a nested string, a reference to a missing object, a name escaped with #,
an active name anywhere in the structure...) returns None, and `inspect()` asks pypdf as
before. A differential test (records/tests/test_plain_pdf.py) holds the two paths to the
same verdict on the hostile corpus and on generated and mutated files.
"""

from __future__ import annotations

import functools
import re
from typing import Union

# What the structure holds, as far as this reader cares.
Ref = tuple[int, int]
Value = Union["dict[bytes, Value]", "list[Value]", Ref, bytes, int, None]

# Only the whitespace every PDF reader agrees on (pypdf and the spec differ on NUL, FF, VT).
_WS = rb"[\t\n\r ]"
_DELIM_OR_END = rb"(?=[\t\n\r ()<>\[\]{}/%]|\Z)"
# One token of an object's body. Names: printable ASCII without '#' (an escaped name such as
# /J#61vaScript is pypdf's job). Literal strings: no nested parentheses. Comments only where
# a dictionary expects a key.
# Leading whitespace is part of the token: one match per token, half the matches. pypdf
# recognises a reference within 20 bytes of lookahead: short numbers only.
_TOKEN = re.compile(
    _WS
    + rb"*(?:(?P<ref>(?P<number>\d{1,7})"
    + _WS
    + rb"{1,2}(?P<generation>\d{1,5})"
    + _WS
    + rb"{1,2}R"
    + _DELIM_OR_END
    + rb")"
    rb"|(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)" + _DELIM_OR_END + rb")"
    rb"|(?P<name>/[^\x00-\x20\x7f-\xff()<>\[\]{}/%#]*" + _DELIM_OR_END + rb")"
    rb"|(?P<open_dict><<)|(?P<close_dict>>>)|(?P<open_array>\[)|(?P<close_array>\])"
    rb"|(?P<str>\((?:[^()\\]|\\[^\r\n]|\\\r\n|\\[\r\n])*\))"
    rb"|(?P<hex><[0-9A-Fa-f\t\n\r ]*>)"
    rb"|(?P<kw>true|false|null)" + _DELIM_OR_END + rb"|(?P<comment>%[^\r\n]*))",
    re.DOTALL,
)
_OBJ_HEADER = re.compile(rb"(\d+) (\d+) obj")
_ENDOBJ = re.compile(_WS + rb"*endobj" + _DELIM_OR_END)
_STREAM_START = re.compile(_WS + rb"*stream(?:\r\n|\n)")
_ENDSTREAM = re.compile(_WS + rb"*endstream" + _WS + rb"*endobj" + _DELIM_OR_END)
_EOL = rb"(?:\r\n|\n|\r)"
_STARTXREF = re.compile(_EOL + rb"startxref" + _EOL + rb"(\d+)" + _EOL + rb"\Z")
_XREF_HEAD = re.compile(rb"xref" + _EOL)
_SUBSECTION = re.compile(rb"(\d+) (\d+)" + _EOL)
_ENTRY = re.compile(rb"(\d{10}) (\d{5}) ([nf])(?:\r\n| \n| \r)")
_TRAILER = re.compile(rb"trailer" + _WS + rb"*")
# Generous for a lab report, far below the walk's own cap in inspection.py.
_MAX_OBJECTS = 10_000
_NEEDS_PYPDF = frozenset({b"/ObjStm", b"/XRef", b"/XRefStm", b"/Encrypt", b"/Prev"})
_MAX_PAGE_DEPTH = 32


class _NotPlain(Exception):
    """Something this reader does not vouch for: pypdf decides."""


def plain_pdf_is_clean(data: bytes, active_names: frozenset[bytes]) -> bool | None:
    """True when `data` is a plain PDF with at least one page, every object readable and no
    name of `active_names` in its structure; None when pypdf must decide. Never False: a
    refusal or a flag is always pypdf's to give, with its own message."""
    try:
        return _check(data, active_names)
    except (_NotPlain, ValueError, IndexError, KeyError, TypeError, RecursionError):
        return None


def _check(data: bytes, active_names: frozenset[bytes]) -> bool:
    eof = data.rfind(b"%%EOF")
    if eof <= 0 or data[eof - 1 : eof] not in (b"\n", b"\r"):
        raise _NotPlain
    if data[eof + 5 : eof + 6] not in (b"", b"\n", b"\r"):
        raise _NotPlain
    found = _STARTXREF.search(data, max(0, eof - 64), eof)
    if found is None:
        raise _NotPlain
    offsets, trailer_start = _xref_table(data, int(found.group(1)))
    refs: list[Ref] = []
    trailer, _ = _value(data, trailer_start, active_names, refs)
    root = trailer.get(b"/Root") if isinstance(trailer, dict) else None
    if not isinstance(trailer, dict) or not isinstance(root, tuple):
        raise _NotPlain
    # Encryption, an earlier revision, a hybrid file's xref stream: pypdf's full reader.
    if trailer.keys() & {b"/Encrypt", b"/Prev", b"/XRefStm"}:
        raise _NotPlain
    objects = {
        ref: _object(data, ref, offset, active_names, refs) for ref, offset in offsets.items()
    }
    # Every reference, in every object, points at an object that is there: pypdf would
    # otherwise answer null for it, which inspect() treats as unparsed.
    if not objects.keys() >= set(refs):
        raise _NotPlain
    return _count_pages(objects, root) > 0


def _xref_table(data: bytes, start: int) -> tuple[dict[Ref, int], int]:
    head = _XREF_HEAD.match(data, start)
    if head is None:
        raise _NotPlain
    position = head.end()
    offsets: dict[Ref, int] = {}
    first = True
    while True:
        section = _SUBSECTION.match(data, position)
        if section is None:
            break
        number, count = int(section.group(1)), int(section.group(2))
        if first and number != 0:  # pypdf renumbers such tables: its reading, not ours
            raise _NotPlain
        first = False
        position = section.end()
        for index in range(count):
            entry = _ENTRY.match(data, position)
            if entry is None:
                raise _NotPlain
            position = entry.end()
            if entry.group(3) == b"n":
                ref = (number + index, int(entry.group(2)))
                if ref[0] == 0 or ref in offsets:
                    raise _NotPlain
                offsets[ref] = int(entry.group(1))
        if len(offsets) > _MAX_OBJECTS:
            raise _NotPlain
    if len({number for number, _ in offsets}) != len(offsets):
        raise _NotPlain
    trailer = _TRAILER.match(data, position)
    if trailer is None:
        raise _NotPlain
    return offsets, trailer.end()


def _object(
    data: bytes, ref: Ref, offset: int, active_names: frozenset[bytes], refs: list[Ref]
) -> Value:
    header = _OBJ_HEADER.match(data, offset)
    if header is None or (int(header.group(1)), int(header.group(2))) != ref:
        raise _NotPlain
    position = header.end()
    if data[position : position + 1] not in (b"\n", b"\r", b" ", b"<", b"["):
        raise _NotPlain
    value, position = _value(data, position, active_names, refs)
    if value is None:  # pypdf answers null for it, which inspect() treats as unparsed
        raise _NotPlain
    end = _ENDOBJ.match(data, position)
    if end is not None:
        return value
    stream = _STREAM_START.match(data, position)
    if stream is None or not isinstance(value, dict):
        raise _NotPlain
    length = value.get(b"/Length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise _NotPlain
    if _ENDSTREAM.match(data, stream.end() + length) is None:
        raise _NotPlain
    return value


def _value(
    data: bytes, position: int, active_names: frozenset[bytes], refs: list[Ref]
) -> tuple[Value, int]:
    """One direct object from `position`: (its value, where it ends); adds to `refs` every
    reference it holds."""
    # Written for speed (this loop was a sixth of a REST ingest's CPU): the open container
    # and its pending key live in locals rather than at the top of two stacks, and the
    # commonest tokens are tested first.
    forbidden = _forbidden(active_names)
    outer: list[tuple[dict[bytes, Value] | list[Value] | None, bytes | None]] = []
    container: dict[bytes, Value] | list[Value] | None = None
    key: bytes | None = None  # the key read, in a dictionary, waiting for its value
    match = _TOKEN.match
    while True:
        token = match(data, position)
        if token is None:
            raise _NotPlain
        position = token.end()
        kind = token.lastgroup
        value: Value
        if kind == "name":
            value = token["name"]
            # Flagged files are pypdf's, with its walk; so are object and xref streams.
            if value in forbidden:
                raise _NotPlain
        elif kind == "ref":
            value = (int(token["number"]), int(token["generation"]))
            refs.append(value)
        elif kind == "num":
            text = token["num"]
            value = int(text) if text.lstrip(b"+-").isdigit() else text
        elif kind == "open_dict" or kind == "open_array":
            outer.append((container, key))
            container = {} if kind == "open_dict" else []
            key = None
            continue
        elif kind == "close_dict" or kind == "close_array":
            if container is None or isinstance(container, dict) != (kind == "close_dict"):
                raise _NotPlain
            if key is not None:  # a key without its value
                raise _NotPlain
            value = container
            container, key = outer.pop()
        elif kind == "comment":
            # pypdf skips a comment where a dictionary expects its next key (ReportLab writes
            # one in its trailer); anywhere else its reading is its own business.
            if not isinstance(container, dict) or key is not None:
                raise _NotPlain
            continue
        elif kind == "kw":
            value = None if token["kw"] == b"null" else token["kw"]
        else:  # str, hex: their content does not matter here
            value = b""
        if container is None:
            return value, position
        if isinstance(container, list):
            container.append(value)
        elif key is None:  # a key comes first
            if kind != "name":
                raise _NotPlain
            key = token["name"]
        else:
            if key in container:  # which one pypdf keeps is its business
                raise _NotPlain
            container[key] = value
            key = None


@functools.lru_cache(maxsize=4)
def _forbidden(active_names: frozenset[bytes]) -> frozenset[bytes]:
    """The names that send a file to pypdf: an active one, or a structure this reader skips."""
    return active_names | _NEEDS_PYPDF


def _count_pages(objects: dict[Ref, Value], root: Ref) -> int:
    catalog = objects[root]
    if not isinstance(catalog, dict) or catalog.get(b"/Type") != b"/Catalog":
        raise _NotPlain
    top = catalog.get(b"/Pages")
    if not isinstance(top, tuple):
        raise _NotPlain
    seen: set[Ref] = set()
    pages = 0
    pending: list[tuple[Ref, int]] = [(top, 0)]
    while pending:
        ref, depth = pending.pop()
        if ref in seen or depth > _MAX_PAGE_DEPTH:
            raise _NotPlain
        seen.add(ref)
        node = objects[ref]
        if not isinstance(node, dict):
            raise _NotPlain
        kind = node.get(b"/Type")
        if kind == b"/Page" and b"/Kids" not in node:
            pages += 1
        elif kind == b"/Pages":
            kids = node.get(b"/Kids")
            if not isinstance(kids, list) or not all(isinstance(k, tuple) for k in kids):
                raise _NotPlain
            pending.extend((kid, depth + 1) for kid in kids)  # type: ignore[misc]
        else:
            raise _NotPlain
    return pages
