"""The blob format: round trips, bounded memory, and every tampering we can think of."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigie.vault.envelope import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    new_data_key,
    open_chunks,
    seal_chunks,
)
from vigie.vault.errors import DocumentTooLarge, IntegrityError, VaultError

CHUNK = 1024
DOC = "doc-0123456789abcdef"
OTHER_DOC = "doc-fedcba9876543210"
KEY = new_data_key()
MB = 1024 * 1024


def seal(data: bytes, *, key: bytes = KEY, doc: str = DOC, chunk_size: int = CHUNK) -> bytes:
    return b"".join(seal_chunks(key, doc, io.BytesIO(data), chunk_size))


def open_all(blob: bytes, *, key: bytes = KEY, doc: str = DOC) -> bytes:
    return b"".join(open_chunks(key, doc, io.BytesIO(blob)))


def drain(blob: bytes, *, key: bytes = KEY, doc: str = DOC) -> tuple[list[bytes], IntegrityError]:
    """Open until the error; return what was yielded before it, and the error."""
    yielded: list[bytes] = []
    try:
        for chunk in open_chunks(key, doc, io.BytesIO(blob)):
            yielded.append(chunk)
    except IntegrityError as error:
        return yielded, error
    pytest.fail("the damaged blob opened without IntegrityError")


def records(blob: bytes, chunk_size: int = CHUNK) -> list[bytes]:
    """The blob's encrypted chunks, split at their boundaries."""
    body, size = blob[HEADER_SIZE:], chunk_size + TAG_SIZE
    return [body[i : i + size] for i in range(0, len(body), size)]


def plain_chunks(data: bytes, chunk_size: int = CHUNK) -> list[bytes]:
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


def flip(blob: bytes, position: int, mask: int = 0x01) -> bytes:
    mutated = bytearray(blob)
    mutated[position] ^= mask
    return bytes(mutated)


# Five full chunks and a short last one: enough to reorder, drop and cut.
DATA = os.urandom(5 * CHUNK + 300)
BLOB = seal(DATA)
RECORDS = records(BLOB)
HEADER = BLOB[:HEADER_SIZE]


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_it_round_trips_with_a_small_chunk_size(size: int) -> None:
    data = os.urandom(size)
    assert open_all(seal(data)) == data


@pytest.mark.parametrize(
    "size",
    [0, 1, DEFAULT_CHUNK_SIZE - 1, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1],
)
def test_it_round_trips_with_the_default_chunk_size(size: int) -> None:
    data = os.urandom(size)
    assert open_all(seal(data, chunk_size=DEFAULT_CHUNK_SIZE)) == data


def test_it_seals_an_empty_document_as_one_empty_final_chunk() -> None:
    blob = seal(b"")
    assert len(blob) == HEADER_SIZE + TAG_SIZE
    assert list(open_chunks(KEY, DOC, io.BytesIO(blob))) == []


def test_it_yields_whole_chunks() -> None:
    assert list(open_chunks(KEY, DOC, io.BytesIO(BLOB))) == plain_chunks(DATA)


def test_it_reports_plaintext_size_and_sha256() -> None:
    stream = seal_chunks(KEY, DOC, io.BytesIO(DATA), CHUNK)
    blob = b"".join(stream)
    assert stream.size == len(DATA)
    assert stream.sha256 == hashlib.sha256(DATA).hexdigest()
    assert len(blob) == HEADER_SIZE + len(DATA) + 6 * TAG_SIZE


def test_it_refuses_to_report_stats_before_sealing_finished() -> None:
    stream = seal_chunks(KEY, DOC, io.BytesIO(DATA), CHUNK)
    next(stream)
    with pytest.raises(VaultError, match="not finished"):
        _ = stream.sha256
    with pytest.raises(VaultError, match="not finished"):
        _ = stream.size


class TrickleReader(io.RawIOBase):
    """A pipe-like source: never returns more than a few bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[: self._step]
        return self._data.readinto(view)


def test_it_keeps_chunk_boundaries_with_sources_that_return_short_reads() -> None:
    blob = b"".join(seal_chunks(KEY, DOC, TrickleReader(DATA, 100), CHUNK))  # type: ignore[arg-type]
    # Chunk boundaries did not move: the blob has the same length and opens.
    assert len(blob) == len(BLOB)
    assert open_all(blob) == DATA
    # And the opener copes with a blob that trickles in just the same.
    assert b"".join(open_chunks(KEY, DOC, TrickleReader(blob, 7))) == DATA  # type: ignore[arg-type]


class ReadOnlySource:
    """A file-like object with read() but no readinto()."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 333))


def test_it_reads_sources_without_readinto() -> None:
    blob = b"".join(seal_chunks(KEY, DOC, ReadOnlySource(DATA), CHUNK))  # type: ignore[arg-type]
    assert open_all(blob) == DATA


class NonBlockingSource(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> None:
        return None


def test_it_refuses_a_non_blocking_source_rather_than_cut_the_document_short() -> None:
    with pytest.raises(VaultError, match="non-blocking"):
        list(seal_chunks(KEY, DOC, NonBlockingSource(), CHUNK))  # type: ignore[arg-type]


def test_it_stops_a_document_over_the_size_limit() -> None:
    stream = seal_chunks(KEY, DOC, io.BytesIO(DATA), CHUNK, max_size=len(DATA) - 1)
    with pytest.raises(DocumentTooLarge, match=DOC):
        list(stream)


def test_it_accepts_a_document_exactly_at_the_size_limit() -> None:
    blob = b"".join(seal_chunks(KEY, DOC, io.BytesIO(DATA), CHUNK, max_size=len(DATA)))
    assert open_all(blob) == DATA


@pytest.mark.parametrize("chunk_size", [0, -1, 16 * MB + 1])
def test_it_refuses_an_unreasonable_chunk_size(chunk_size: int) -> None:
    with pytest.raises(VaultError, match="chunk size"):
        seal_chunks(KEY, DOC, io.BytesIO(b"x"), chunk_size)


def test_it_refuses_a_data_key_of_the_wrong_length() -> None:
    with pytest.raises(VaultError, match="32 bytes"):
        seal_chunks(KEY[:16], DOC, io.BytesIO(b"x"), CHUNK)
    with pytest.raises(VaultError, match="32 bytes"):
        open_chunks(KEY[:16], DOC, io.BytesIO(BLOB))


def test_it_gives_every_document_a_fresh_data_key() -> None:
    assert len({new_data_key() for _ in range(100)}) == 100


# -- streaming: 50 MB through bounded memory -------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "plain.bin"
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(50):
            block = os.urandom(MB)
            digest.update(block)
            handle.write(block)
    return path, digest.hexdigest()


def test_it_seals_and_opens_50_mb_in_bounded_memory(
    big_file: tuple[Path, str], tmp_path: Path
) -> None:
    plain_path, plain_sha256 = big_file
    sealed_path = tmp_path / "sealed.blob"
    limit = 4 * DEFAULT_CHUNK_SIZE + 256 * 1024

    digest = hashlib.sha256()
    size = 0
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with plain_path.open("rb", buffering=0) as source, sealed_path.open("wb") as sink:
            stream = seal_chunks(KEY, DOC, source, DEFAULT_CHUNK_SIZE)
            for piece in stream:
                sink.write(piece)
            del piece
        seal_peak = tracemalloc.get_traced_memory()[1] - baseline

        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        with sealed_path.open("rb", buffering=0) as blob:
            for chunk in open_chunks(KEY, DOC, blob):
                digest.update(chunk)
                size += len(chunk)
        open_peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert stream.size == size == 50 * MB
    assert stream.sha256 == digest.hexdigest() == plain_sha256
    assert seal_peak < limit, f"sealing peaked at {seal_peak} bytes"
    assert open_peak < limit, f"opening peaked at {open_peak} bytes"


# -- tampering ------------------------------------------------------------------------------


@pytest.mark.parametrize("position", range(HEADER_SIZE))
def test_it_detects_a_tampered_header(position: int) -> None:
    yielded, error = drain(flip(BLOB, position))
    assert yielded == []
    assert DOC in str(error)


def test_it_refuses_a_forged_huge_chunk_size_without_allocating_it() -> None:
    forged = struct.pack(">4sBI", b"VGV1", 1, 0xFFFFFFFF) + BLOB[9:]
    yielded, error = drain(forged)
    assert yielded == []
    assert "chunk size" in str(error)


@pytest.mark.parametrize("chunk", range(6))
def test_it_detects_a_flipped_ciphertext_byte(chunk: int) -> None:
    position = HEADER_SIZE + chunk * (CHUNK + TAG_SIZE) + 5
    yielded, error = drain(flip(BLOB, position))
    # Chunks before the damaged one are authentic; the damaged one is never yielded.
    assert yielded == plain_chunks(DATA)[:chunk]
    assert f"chunk {chunk} failed authentication" in str(error)
    assert DOC in str(error)


@pytest.mark.parametrize("chunk", range(6))
def test_it_detects_a_flipped_tag_byte(chunk: int) -> None:
    end_of_chunk = HEADER_SIZE + sum(len(r) for r in RECORDS[: chunk + 1])
    yielded, error = drain(flip(BLOB, end_of_chunk - 1))
    assert yielded == plain_chunks(DATA)[:chunk]
    assert f"chunk {chunk}" in str(error)


def test_it_detects_swapped_chunks() -> None:
    swapped = HEADER + RECORDS[0] + RECORDS[2] + RECORDS[1] + b"".join(RECORDS[3:])
    yielded, error = drain(swapped)
    assert yielded == plain_chunks(DATA)[:1]
    assert "chunk 1" in str(error)


def test_it_detects_a_dropped_chunk() -> None:
    dropped = HEADER + RECORDS[0] + b"".join(RECORDS[2:])
    yielded, error = drain(dropped)
    assert yielded == plain_chunks(DATA)[:1]
    assert "chunk 1" in str(error)


def test_it_detects_a_replayed_chunk() -> None:
    replayed = HEADER + RECORDS[0] + RECORDS[0] + b"".join(RECORDS[1:])
    yielded, _ = drain(replayed)
    assert yielded == plain_chunks(DATA)[:1]


def test_it_detects_a_dropped_final_chunk() -> None:
    # What remains ends on a full chunk boundary: it must not pass for a complete document.
    yielded, error = drain(HEADER + b"".join(RECORDS[:-1]))
    assert yielded == plain_chunks(DATA)[:4]
    assert "chunk 4" in str(error)


def test_it_detects_a_final_chunk_moved_forward() -> None:
    moved = HEADER + RECORDS[0] + RECORDS[-1]
    yielded, _ = drain(moved)
    assert yielded == plain_chunks(DATA)[:1]


def test_it_detects_truncation_after_every_chunk_boundary() -> None:
    boundary = HEADER_SIZE
    for count, record in enumerate(RECORDS[:-1], start=1):
        boundary += len(record)
        yielded, _ = drain(BLOB[:boundary])
        assert yielded == plain_chunks(DATA)[: count - 1]
    for cut in (0, HEADER_SIZE - 1, HEADER_SIZE):
        yielded, _ = drain(BLOB[:cut])
        assert yielded == []


def test_it_detects_truncation_at_every_byte() -> None:
    data = os.urandom(5 * 16 + 9)
    blob = seal(data, chunk_size=16)
    for cut in range(len(blob)):
        yielded, _ = drain(blob[:cut])
        assert data.startswith(b"".join(yielded))
        assert len(b"".join(yielded)) < len(data)


@pytest.mark.parametrize("garbage", [b"\x00", b"garbage" * 10, os.urandom(CHUNK + TAG_SIZE)])
@pytest.mark.parametrize("size", [5 * CHUNK + 300, 5 * CHUNK, 0])
def test_it_detects_appended_data(garbage: bytes, size: int) -> None:
    data = DATA[:size]
    yielded, _ = drain(seal(data) + garbage)
    assert len(b"".join(yielded)) < max(len(data), 1)


def test_it_detects_an_appended_copy_of_the_final_chunk() -> None:
    blob = seal(DATA[: 2 * CHUNK])
    yielded, _ = drain(blob + records(blob)[-1])
    assert yielded == plain_chunks(DATA)[:1]


def test_it_detects_blobs_swapped_between_documents() -> None:
    # Even under one data key, a blob sealed for one document does not open as another.
    mine, theirs = seal(DATA, doc=DOC), seal(DATA, doc=OTHER_DOC)
    for blob, doc in ((mine, OTHER_DOC), (theirs, DOC)):
        yielded, error = drain(blob, doc=doc)
        assert yielded == []
        assert f"document {doc}: chunk 0" in str(error)


def test_it_detects_a_wrong_data_key() -> None:
    yielded, error = drain(BLOB, key=new_data_key())
    assert yielded == []
    assert "chunk 0" in str(error)


def test_it_detects_a_chunk_spliced_from_another_blob_of_the_same_key() -> None:
    other = seal(os.urandom(len(DATA)))
    spliced = HEADER + RECORDS[0] + records(other)[1] + b"".join(RECORDS[2:])
    yielded, _ = drain(spliced)
    assert yielded == plain_chunks(DATA)[:1]


# -- properties -----------------------------------------------------------------------------

_fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(data=st.binary(max_size=3000), chunk_size=st.integers(min_value=1, max_value=700))
def test_it_round_trips_any_plaintext_with_any_chunk_size(data: bytes, chunk_size: int) -> None:
    stream = seal_chunks(KEY, DOC, io.BytesIO(data), chunk_size)
    blob = b"".join(stream)
    assert open_all(blob) == data
    assert stream.size == len(data)
    assert stream.sha256 == hashlib.sha256(data).hexdigest()


@_fast
@given(
    data=st.binary(max_size=1500),
    chunk_size=st.integers(min_value=1, max_value=400),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    mask=st.integers(min_value=1, max_value=255),
)
def test_it_detects_any_single_byte_mutation(
    data: bytes, chunk_size: int, where: float, mask: int
) -> None:
    blob = seal(data, chunk_size=chunk_size)
    position = int(where * len(blob))
    yielded, _ = drain(flip(blob, position, mask))
    # Whatever came out before the error is authentic: a whole-chunk prefix of the original.
    assert yielded == plain_chunks(data, chunk_size)[: len(yielded)]
    assert len(yielded) <= max(0, (position - HEADER_SIZE) // (chunk_size + TAG_SIZE))


@_fast
@given(
    data=st.binary(max_size=1500),
    chunk_size=st.integers(min_value=1, max_value=400),
    cut=st.floats(min_value=0, max_value=1, exclude_max=True),
    tail=st.binary(max_size=50),
)
def test_it_detects_any_truncation_or_extension(
    data: bytes, chunk_size: int, cut: float, tail: bytes
) -> None:
    blob = seal(data, chunk_size=chunk_size)
    damaged = blob[: int(cut * len(blob))] + tail
    if damaged == blob:
        return
    yielded, _ = drain(damaged)
    assert yielded == plain_chunks(data, chunk_size)[: len(yielded)]
