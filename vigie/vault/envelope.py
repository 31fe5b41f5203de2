"""The encrypted blob format: a header, then the document in AES-256-GCM chunks.

Layout::

    header   = "VGV1" | version (u8 = 1) | chunk size (u32) | nonce base (12 random bytes)
    chunk i  = AES-256-GCM(data key, nonce_i, plaintext_i, aad_i)   len(plaintext_i) + 16
    nonce_i  = nonce base XOR i (i as a 96-bit big-endian integer)
    aad_i    = header | len(document id) (u32) | document id (UTF-8) | i (u64) | final (u8)

Every chunk but the last holds exactly `chunk size` plaintext bytes; the last holds 0 to
`chunk size` bytes (an empty document is one empty final chunk). Binding the header, the
document id, the index and the final flag into every chunk's authentication means that
reordered, dropped, duplicated or appended chunks, a blob cut after any chunk, a tampered
header and a blob moved to another document all fail authentication. The opener yields a
chunk only after it authenticated, so no unauthenticated byte ever leaves this module.

A stream can only be judged whole at its end: when a blob is damaged in its middle, the
chunks before the damage have been yielded (they are authentic) before IntegrityError is
raised. Consumers that stream to a client must abort the response on that error.

Each document has its own random data key that encrypts that document exactly once, so a
plain counter would already be a safe GCM nonce: a nonce can only repeat if a key is reused.
The random nonce base costs 12 bytes and guards against that mistake anyway: were a data key
ever reused, nonces would still not collide, and since the base is part of the header, hence
of every chunk's associated data, chunks could not be spliced from one blob into another.
Still, never pass the same data key to `seal_chunks` twice.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable, Generator, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vigie.vault.errors import DocumentTooLarge, IntegrityError, VaultError

MAGIC = b"VGV1"
VERSION = 1
DATA_KEY_SIZE = 32
TAG_SIZE = 16
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 1
# The opener allocates buffers from the header's chunk size before anything is
# authenticated: the bound keeps a forged header from making it allocate gigabytes.
MAX_CHUNK_SIZE = 16 * 1024 * 1024

_HEADER = struct.Struct(">4sBI12s")
HEADER_SIZE = _HEADER.size
_NONCE_SIZE = 12
_CHUNK_AAD = struct.Struct(">QB")

_Filler = Callable[[memoryview], int]


def new_data_key() -> bytes:
    """A fresh random 256-bit key for one document."""
    return secrets.token_bytes(DATA_KEY_SIZE)


def _cipher(data_key: bytes, document_id: str) -> AESGCM:
    if len(data_key) != DATA_KEY_SIZE:
        raise VaultError(f"document {document_id}: a data key must be {DATA_KEY_SIZE} bytes")
    return AESGCM(data_key)


def _encode_id(document_id: str) -> bytes:
    if not isinstance(document_id, str) or not document_id:
        raise VaultError("a document id is required to seal or open a document")
    encoded = document_id.encode("utf-8")
    # Length-prefixed so (header, id, index) can never be parsed two ways.
    return len(encoded).to_bytes(4, "big") + encoded


def _filler(source: BinaryIO, document_id: str) -> _Filler:
    """A function that fills a buffer from `source` and returns the byte count, which is
    short only at end of stream (files, pipes and sockets may return less than asked)."""
    readinto = getattr(source, "readinto", None)

    def fill(view: memoryview) -> int:
        size = len(view)
        total = 0
        while total < size:
            if readinto is not None:
                got = readinto(view[total:] if total else view)
            else:
                data: bytes | None = source.read(size - total)
                if data is None:
                    got = None
                else:
                    got = len(data)
                    view[total : total + got] = data
            if got is None:
                # A non-blocking stream with nothing ready: treating it as the end would
                # silently cut the document short.
                raise VaultError(f"document {document_id}: source is a non-blocking stream")
            if not got:
                break
            total += got
        return total

    return fill


class SealStream(Iterator[bytes]):
    """The blob of one document, produced piece by piece as the source is read.

    Iterate it to get the header then each encrypted chunk. Once iteration is complete,
    `size` and `sha256` describe the plaintext that was sealed.
    """

    def __init__(
        self,
        data_key: bytes,
        document_id: str,
        source: BinaryIO,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_size: int | None = None,
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise VaultError(
                f"document {document_id}: chunk size {chunk_size} is outside "
                f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"
            )
        aead = _cipher(data_key, document_id)
        header = _HEADER.pack(MAGIC, VERSION, chunk_size, secrets.token_bytes(_NONCE_SIZE))
        prefix = header + _encode_id(document_id)
        self._document_id = document_id
        self._hash = hashlib.sha256()
        self._size = 0
        self._complete = False
        self._pieces = self._generate(
            aead, header, prefix, _filler(source, document_id), chunk_size, max_size
        )

    def __iter__(self) -> SealStream:
        return self

    def __next__(self) -> bytes:
        return next(self._pieces)

    def _unfinished(self) -> VaultError:
        return VaultError(f"document {self._document_id}: sealing has not finished")

    @property
    def size(self) -> int:
        """Plaintext length in bytes (available once the stream is exhausted)."""
        if not self._complete:
            raise self._unfinished()
        return self._size

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the plaintext (available once the stream is exhausted)."""
        if not self._complete:
            raise self._unfinished()
        return self._hash.hexdigest()

    def _generate(
        self,
        aead: AESGCM,
        header: bytes,
        prefix: bytes,
        fill: _Filler,
        chunk_size: int,
        max_size: int | None,
    ) -> Iterator[bytes]:
        yield header
        # One byte of lookahead is enough to know whether a full chunk is the last one; it
        # is carried to the front of the buffer for the next chunk. A single buffer keeps
        # peak memory near 3 chunks (buffer, new ciphertext, the consumer's previous one).
        buffer = bytearray(chunk_size + 1)
        view = memoryview(buffer)
        carried = 0
        index = 0
        total = 0
        base = int.from_bytes(header[-_NONCE_SIZE:], "big")
        encrypt, aad = aead.encrypt, _CHUNK_AAD.pack
        update = self._hash.update
        while True:
            got = fill(view[carried:])
            total += got
            if max_size is not None and total > max_size:
                raise DocumentTooLarge(
                    f"document {self._document_id} is larger than the limit of {max_size} bytes"
                )
            length = carried + got
            final = length <= chunk_size
            chunk = view[:length] if final else view[:chunk_size]
            update(chunk)
            if final:
                self._size = total
                self._complete = True
            nonce = (base ^ index).to_bytes(_NONCE_SIZE, "big")
            sealed = encrypt(nonce, chunk, prefix + aad(index, final))
            if final:
                yield sealed
                return
            buffer[0] = buffer[chunk_size]
            carried = 1
            yield sealed
            index += 1


def seal_chunks(
    data_key: bytes,
    document_id: str,
    source: BinaryIO,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_size: int | None = None,
) -> SealStream:
    """Encrypt `source` for `document_id`; iterate the result to get the blob's pieces.

    Raises DocumentTooLarge during iteration as soon as more than `max_size` bytes are read.
    After iteration, the result's `size` and `sha256` describe the plaintext.
    """
    return SealStream(data_key, document_id, source, chunk_size, max_size)


def open_chunks(
    data_key: bytes, document_id: str, source: BinaryIO
) -> Generator[bytes, None, None]:
    """Decrypt a blob of `document_id`, yielding plaintext chunks, each one authenticated.

    Raises IntegrityError naming the document and chunk at the first chunk that fails.
    """
    aead = _cipher(data_key, document_id)
    encoded_id = _encode_id(document_id)  # checked now, not at the first next()
    return _open(aead, document_id, encoded_id, _filler(source, document_id))


def _open(
    aead: AESGCM, document_id: str, encoded_id: bytes, fill: _Filler
) -> Generator[bytes, None, None]:
    header = bytearray(HEADER_SIZE)
    if fill(memoryview(header)) < HEADER_SIZE:
        raise IntegrityError(f"document {document_id}: blob is truncated inside its header")
    magic, version, chunk_size, nonce_base = _HEADER.unpack(header)
    if magic != MAGIC:
        raise IntegrityError(f"document {document_id}: blob is not a Vigie envelope (bad magic)")
    if version != VERSION:
        raise IntegrityError(f"document {document_id}: unknown envelope version {version}")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(f"document {document_id}: invalid chunk size {chunk_size} in header")
    prefix = bytes(header) + encoded_id
    record = chunk_size + TAG_SIZE
    # Same one-byte lookahead as the sealer: a record is final iff nothing follows it.
    buffer = bytearray(record + 1)
    view = memoryview(buffer)
    carried = 0
    index = 0
    base = int.from_bytes(nonce_base, "big")
    decrypt, aad = aead.decrypt, _CHUNK_AAD.pack
    while True:
        length = carried + fill(view[carried:])
        final = length <= record
        if final and length < TAG_SIZE:
            raise IntegrityError(f"document {document_id}: blob is truncated at chunk {index}")
        try:
            plaintext = decrypt(
                (base ^ index).to_bytes(_NONCE_SIZE, "big"),
                view[:length] if final else view[:record],
                prefix + aad(index, final),
            )
        except InvalidTag:
            raise IntegrityError(
                f"document {document_id}: chunk {index} failed authentication (tampered, "
                f"truncated, reordered, wrong key, or another document's blob)"
            ) from None
        if final:
            if plaintext:
                yield plaintext
            return
        buffer[0] = buffer[record]
        carried = 1
        yield plaintext
        index += 1
