"""Blobs in an S3-compatible object store (VIGIE_BLOB_STORE=s3), through boto3.

The same promises as the filesystem store, kept by the server rather than by rename(2):

- write-once: every object is created with `If-None-Match: *` (PutObject, or
  CompleteMultipartUpload for large blobs), so the server refuses to replace an existing
  blob (412). A store that ignores the condition would let a replayed or buggy write destroy a
  document, so `probe_write_once` creates a probe object twice and refuses the store unless
  the second attempt fails; `store_from_settings` runs it once per process;
- all or nothing: a blob appears only when its upload completes; a failed multipart upload is
  aborted, and any that a crash left open are listed by `unfinished_writes` for fsck;
- checksums: every PUT and part carries its SHA-256 (the server rejects a body that does not
  match), and reads check the whole object against the checksum the server recorded
  (`S3BlobReader`); chunk by chunk, AES-GCM still authenticates everything served;
- timeouts and retries with exponential backoff (botocore's "standard" mode), and every
  failure to reach the store raised as StoreUnavailable (the portal answers 503).

Only ciphertext goes to the bucket; the keyring never does. Credentials are read from files.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vigie.vault.errors import BlobMissing, StoreUnavailable, VaultError
from vigie.vault.s3reader import S3BlobReader
from vigie.vault.store import UnfinishedWrite, validate_blob_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_SUFFIX = ".blob"
_PART_SIZE_META = "vigie-part-size"
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's own minimum for every part but the last
_PROBE_FOLDER = ".vigie-probe/"
# Codes servers give when a conditional create finds the key taken: 412 (AWS, MinIO, moto),
# 409 ConditionalRequestConflict when two creates race (AWS).
_REFUSED = {"PreconditionFailed", "ConditionalRequestConflict"}
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Config:
    """Where the bucket is and how to reach it (the S3 part of the settings)."""

    bucket: str
    prefix: str = "blobs/"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id_file: str | None = None
    secret_access_key_file: str | None = None
    connect_timeout: int = 5
    read_timeout: int = 20
    max_attempts: int = 3
    part_size: int = 8 * 1024 * 1024


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def unavailable(exc: Exception, what: str) -> StoreUnavailable:
    """A StoreUnavailable saying what failed; never the credentials or a stack of botocore."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return StoreUnavailable(f"{what}: the object store answered {status} {error_code(exc)}")
    return StoreUnavailable(f"{what}: the object store did not answer ({type(exc).__name__})")


def _read_credential(path: str | None, name: str) -> str:
    if not path:
        raise VaultError(f"VIGIE_BLOB_STORE=s3 needs {name} (a file holding the value)")
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise VaultError(f"{name}={path}: cannot read ({exc.strerror})") from None
    if not value:
        raise VaultError(f"{name}={path} is empty")
    return value


def make_client(config: S3Config) -> S3Client:
    access_key = _read_credential(config.access_key_id_file, "VIGIE_S3_ACCESS_KEY_ID_FILE")
    secret_key = _read_credential(config.secret_access_key_file, "VIGIE_S3_SECRET_ACCESS_KEY_FILE")
    botocore_config = Config(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        # "standard": retries throttling, 5xx and connection errors with exponential backoff
        # and jitter; max_attempts counts the first try.
        retries={"mode": "standard", "max_attempts": config.max_attempts},
        # Path-style URLs work on every S3-compatible server; virtual hosts need DNS per bucket.
        s3={"addressing_style": "path"},
        # We send our own SHA-256 and check whole objects ourselves (S3BlobReader): botocore's
        # automatic checks would misread a ranged answer as a corrupt whole.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=config.region
    )
    return session.client("s3", endpoint_url=config.endpoint_url, config=botocore_config)


def _sha256_b64(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class S3BlobStore:
    """Write-once encrypted blobs as objects `prefix + id + ".blob"` in one bucket."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "blobs/", **kw: Any) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = int(kw.get("part_size", 8 * 1024 * 1024))
        if self.part_size < MIN_PART_SIZE:
            raise VaultError(f"S3 part size {self.part_size} is below S3's minimum {MIN_PART_SIZE}")

    def __repr__(self) -> str:
        return f"<S3BlobStore {self.describe()}>"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key_for(self, blob_id: str) -> str:
        validate_blob_id(blob_id)
        return f"{self.prefix}{blob_id}{_SUFFIX}"

    def _head(self, blob_id: str) -> dict[str, Any] | None:
        key = self.key_for(blob_id)
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise unavailable(exc, f"blob {blob_id}") from None
        except BotoCoreError as exc:
            raise unavailable(exc, f"blob {blob_id}") from None

    def exists(self, blob_id: str) -> bool:
        return self._head(blob_id) is not None

    def modified_at(self, blob_id: str) -> float:
        head = self._head(blob_id)
        if head is None:
            raise BlobMissing(f"blob {blob_id} not found in {self.describe()}")
        return float(head["LastModified"].timestamp())

    def _exists_error(self, blob_id: str) -> VaultError:
        return VaultError(
            f"blob {blob_id} already exists in {self.describe()}; blobs are write-once"
        )

    def write(self, blob_id: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenation of `chunks` as `blob_id`; return the number of bytes.

        Up to one part's size, one conditional PUT; beyond, a multipart upload completed with
        the same condition (aborted on any error, the iterator's own included). The object
        exists only once the server has acknowledged it whole.
        """
        key = self.key_for(blob_id)
        if self.exists(blob_id):
            # Checked before reading any input, so a duplicate costs nothing.
            raise self._exists_error(blob_id)
        buffer = bytearray()
        pieces = iter(chunks)
        for chunk in pieces:
            buffer += chunk
            if len(buffer) > self.part_size:
                return self._write_parts(blob_id, key, buffer, pieces)
        body = bytes(buffer)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_sha256_b64(body),
            )
        except ClientError as exc:
            self._raise_write_error(exc, blob_id)
        except BotoCoreError as exc:
            raise unavailable(exc, f"cannot store blob {blob_id}") from None
        return len(body)

    def _raise_write_error(self, exc: ClientError, blob_id: str) -> NoReturn:
        if error_code(exc) in _REFUSED:
            raise self._exists_error(blob_id) from None
        raise unavailable(exc, f"cannot store blob {blob_id}") from None

    def _write_parts(
        self, blob_id: str, key: str, buffer: bytearray, pieces: Iterator[bytes]
    ) -> int:
        try:
            upload = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                Metadata={_PART_SIZE_META: str(self.part_size)},
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, f"cannot store blob {blob_id}") from None
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        total = 0
        try:
            while True:
                while len(buffer) <= self.part_size:
                    chunk = next(pieces, None)
                    if chunk is None:
                        break
                    buffer += chunk
                last = len(buffer) <= self.part_size
                body = bytes(buffer if last else buffer[: self.part_size])
                del buffer[: len(body)]
                number = len(parts) + 1
                digest = _sha256_b64(body)
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=digest,
                )
                parts.append(
                    {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": digest}
                )
                total += len(body)
                if last:
                    break
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                IfNoneMatch="*",
            )
        except BaseException as exc:
            self._abort(key, upload_id)
            if isinstance(exc, ClientError):
                self._raise_write_error(exc, blob_id)
            if isinstance(exc, BotoCoreError):
                raise unavailable(exc, f"cannot store blob {blob_id}") from None
            raise
        return total

    def _abort(self, key: str, upload_id: str) -> None:
        # On failure the upload is left for fsck: `unfinished_writes` lists it, `discard`
        # aborts it. It holds ciphertext only and is never a blob of its own.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def open(self, blob_id: str) -> BinaryIO:
        """The blob for reading, fetched in ranges as it is read, checked whole at its end."""
        key = self.key_for(blob_id)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                raise BlobMissing(f"blob {blob_id} not found in {self.describe()}") from None
            raise unavailable(exc, f"cannot read blob {blob_id}") from None
        except BotoCoreError as exc:
            raise unavailable(exc, f"cannot read blob {blob_id}") from None
        part_size = head.get("Metadata", {}).get(_PART_SIZE_META)
        reader = S3BlobReader(
            self.client,
            self.bucket,
            key,
            blob_id=blob_id,
            size=int(head["ContentLength"]),
            etag=str(head["ETag"]),
            checksum=head.get("ChecksumSHA256"),
            part_size=int(part_size) if part_size and part_size.isdigit() else None,
        )
        return reader  # type: ignore[return-value]

    def delete(self, blob_id: str) -> None:
        """Remove a blob; BlobMissing if there is none."""
        if not self.exists(blob_id):
            raise BlobMissing(f"blob {blob_id} not found in {self.describe()}")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(blob_id))
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, f"cannot delete blob {blob_id}") from None

    def iter_ids(self) -> Iterator[str]:
        """Ids of all complete blobs (open multipart uploads are not objects yet)."""
        pattern = re.compile(
            re.escape(self.prefix) + r"([A-Za-z0-9_-]{16,64})" + re.escape(_SUFFIX)
        )
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    match = pattern.fullmatch(item["Key"])
                    if match:
                        yield match.group(1)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, f"cannot list {self.describe()}") from None

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    yield UnfinishedWrite(
                        f"s3://{self.bucket}/{key} (multipart upload {upload_id[:12]}…)",
                        float(upload["Initiated"].timestamp()),
                        f"{key}\n{upload_id}",
                    )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, f"cannot list uploads in {self.describe()}") from None

    def discard(self, write: UnfinishedWrite) -> None:
        key, upload_id = write.handle.split("\n", 1)
        self._abort(key, upload_id)

    def probe_write_once(self) -> None:
        """Create a probe object twice; unless the server refuses the second, refuse the store.

        The whole of write-once rests on the server honouring `If-None-Match: *`: checking it
        client-side (HEAD, then PUT) would race with another node's write.
        """
        key = f"{self.prefix}{_PROBE_FOLDER}{secrets.token_hex(12)}"
        attempts = []
        try:
            for _ in range(2):
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=b"probe", IfNoneMatch="*"
                    )
                    attempts.append("stored")
                except ClientError as exc:
                    if error_code(exc) not in _REFUSED:
                        raise
                    attempts.append("refused")
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, f"cannot probe {self.describe()}") from None
        finally:
            # A leftover probe (delete failed) is five bytes of nothing.
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        if attempts != ["stored", "refused"]:
            raise VaultError(
                f"the object store {self.describe()} does not refuse to overwrite an object "
                "(If-None-Match: *), so blobs there would not be write-once: use a server "
                "that supports conditional writes (docs/operations.md)"
            )


def config_from_settings(*, bucket: str | None = None, prefix: str | None = None) -> S3Config:
    """The settings' S3 store, or another bucket and prefix on the same server (migrate)."""
    from django.conf import settings

    bucket = bucket or settings.VIGIE_S3_BUCKET
    if not bucket:
        raise VaultError("VIGIE_BLOB_STORE=s3 needs VIGIE_S3_BUCKET")
    return S3Config(
        bucket=bucket,
        prefix=settings.VIGIE_S3_PREFIX if prefix is None else prefix,
        endpoint_url=settings.VIGIE_S3_ENDPOINT_URL,
        region=settings.VIGIE_S3_REGION,
        access_key_id_file=settings.VIGIE_S3_ACCESS_KEY_ID_FILE,
        secret_access_key_file=settings.VIGIE_S3_SECRET_ACCESS_KEY_FILE,
        connect_timeout=settings.VIGIE_S3_CONNECT_TIMEOUT,
        read_timeout=settings.VIGIE_S3_READ_TIMEOUT,
        max_attempts=settings.VIGIE_S3_MAX_ATTEMPTS,
        part_size=settings.VIGIE_S3_PART_SIZE,
    )


@lru_cache(maxsize=8)
def _probed_store(config: S3Config) -> S3BlobStore:
    # Cached per configuration: one client (thread-safe, with its connection pool) and one
    # probe per process. A failed probe raises and is not cached: the next call tries again.
    store = S3BlobStore(
        make_client(config), config.bucket, config.prefix, part_size=config.part_size
    )
    store.probe_write_once()
    return store


def store_from_settings(config: S3Config | None = None) -> S3BlobStore:
    return _probed_store(config or config_from_settings())
