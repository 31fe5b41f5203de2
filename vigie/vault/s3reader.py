"""Reading one blob from an S3-compatible store: ranged GETs, the whole checked at the end.

The envelope reader (envelope.open_chunks) pulls the blob chunk by chunk and authenticates
each before yielding it; this reader feeds it from bounded ranged GETs: a small first range,
so the first chunk is fetched, authenticated and ready before a response starts, then larger
windows. Every range names the ETag seen at open (`If-Match`), so a blob replaced mid-read is
an IntegrityError, never a splice of two objects. At the end, the SHA-256 of every byte read
is compared with the checksum the server recorded at upload (single or per-part composite).
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vigie.vault.errors import IntegrityError, StoreUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The first range holds the header and the first 64 KiB chunk with room to spare; later ones
# are larger to keep request overhead small on big documents.
FIRST_WINDOW = 128 * 1024
WINDOW = 4 * 1024 * 1024


class S3BlobReader(io.RawIOBase):
    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        blob_id: str,
        size: int,
        etag: str,
        checksum: str | None,
        part_size: int | None,
    ) -> None:
        super().__init__()
        self._client, self._bucket, self._key = client, bucket, key
        self._blob_id = blob_id
        self._size = size
        self._etag = etag
        self._checksum = checksum
        self._part_size = part_size
        self._position = 0
        self._body: Any = None
        self._body_end = 0
        self._whole = hashlib.sha256()
        self._part = hashlib.sha256()
        self._part_fill = 0
        self._part_digests: list[bytes] = []
        self._checked = False

    def readable(self) -> bool:
        return True

    def _next_range(self) -> None:
        window = FIRST_WINDOW if self._position == 0 else WINDOW
        end = min(self._position + window, self._size)
        what = f"cannot read blob {self._blob_id}"
        try:
            answer = self._client.get_object(
                Bucket=self._bucket,
                Key=self._key,
                Range=f"bytes={self._position}-{end - 1}",
                IfMatch=self._etag,
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "PreconditionFailed":
                raise IntegrityError(
                    f"document {self._blob_id}: its blob was replaced while being read"
                ) from None
            from vigie.vault.s3store import unavailable

            raise unavailable(exc, what) from None
        except BotoCoreError as exc:
            from vigie.vault.s3store import unavailable

            raise unavailable(exc, what) from None
        self._body = answer["Body"]
        self._body_end = end

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            self._check_whole()
            return 0
        if self._body is None or self._position >= self._body_end:
            self._next_range()
        wanted = min(len(view), self._body_end - self._position)
        try:
            data = self._body.read(wanted)
        except (BotoCoreError, OSError) as exc:
            raise StoreUnavailable(
                f"cannot read blob {self._blob_id}: the object store stopped answering "
                f"({type(exc).__name__})"
            ) from None
        if not data:
            raise StoreUnavailable(
                f"cannot read blob {self._blob_id}: the object store ended a range early"
            )
        got = len(data)
        view[:got] = data
        self._account(data)
        self._position += got
        return got

    def _account(self, data: bytes) -> None:
        self._whole.update(data)
        if self._part_size is None:
            return
        view = memoryview(data)
        while view:
            take = min(len(view), self._part_size - self._part_fill)
            self._part.update(view[:take])
            self._part_fill += take
            view = view[take:]
            if self._part_fill == self._part_size:
                self._part_digests.append(self._part.digest())
                self._part, self._part_fill = hashlib.sha256(), 0

    def _check_whole(self) -> None:
        if self._checked or self._position < self._size:
            return
        self._checked = True
        if not self._checksum:
            return  # a server that keeps no checksum: AES-GCM still authenticates every chunk
        # A multipart object's checksum is the SHA-256 of its parts' SHA-256 digests ("-N"
        # after it on AWS; some servers leave the suffix out of HEAD); a single PUT's is the
        # SHA-256 of the whole. Both candidates are SHA-256: matching either proves the bytes.
        recorded = self._checksum.split("-", 1)[0]
        candidates = {base64.b64encode(self._whole.digest()).decode("ascii")}
        if self._part_size is not None:
            digests = list(self._part_digests)
            if self._part_fill or not digests:
                digests.append(self._part.digest())
            combined = hashlib.sha256(b"".join(digests)).digest()
            candidates.add(base64.b64encode(combined).decode("ascii"))
        if recorded not in candidates:
            raise IntegrityError(
                f"document {self._blob_id}: the blob's bytes do not match the checksum the "
                "object store recorded at upload"
            )

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()
