"""`vigie check` on the blob store, against a real S3 API server process (moto_server): it
proves now, not at the process's start, that the store answers and refuses overwrites, and
says whether the bucket keeps what is deleted."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.s3server import StoreProxy, moto_server
from tests.test_s3_store import _use_s3
from vigie.ops.check_base import FAILURE, OK, WARNING, Context
from vigie.ops.checks_nodes import check_blob_store


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _by_id(findings: list[Any]) -> dict[str, Any]:
    return {finding.id: finding for finding in findings}


def test_a_write_once_bucket_without_versioning_passes_with_a_retention_warning(
    settings: Any, vault_home: Path, s3_url: str
) -> None:
    _use_s3(settings, vault_home, s3_url)
    found = _by_id(check_blob_store(Context()))
    assert found["store"].status == OK
    assert "refuses overwrites" in found["store"].message
    assert found["store.retention"].status == WARNING
    assert "versioning" in found["store.retention"].fix


def test_a_versioned_bucket_keeps_deleted_blobs(
    settings: Any, vault_home: Path, s3_url: str
) -> None:
    bucket = _use_s3(settings, vault_home, s3_url)
    client = boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
    )
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    found = _by_id(check_blob_store(Context()))
    assert found["store"].status == OK
    assert found["store.retention"].status == OK
    assert "versioning" in found["store.retention"].message


def test_a_store_that_overwrites_fails_the_check(
    settings: Any, vault_home: Path, s3_url: str
) -> None:
    with StoreProxy(s3_url) as proxy:
        _use_s3(settings, vault_home, proxy.url)
        proxy.mode = "forgetful"  # drops If-None-Match, as a server without conditional writes
        (finding,) = check_blob_store(Context())
    assert finding.status == FAILURE
    assert "does not refuse to overwrite" in finding.message


def test_a_failing_store_fails_the_check(settings: Any, vault_home: Path, s3_url: str) -> None:
    with StoreProxy(s3_url) as proxy:
        _use_s3(settings, vault_home, proxy.url, VIGIE_S3_MAX_ATTEMPTS=1)
        proxy.mode = "fail"
        (finding,) = check_blob_store(Context())
    assert finding.status == FAILURE
    assert "probe" in finding.message


def test_the_filesystem_store_is_named(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_BLOB_STORE = "file"
    (finding,) = check_blob_store(Context())
    assert finding.status == OK
    assert str(vault_home / "blobs") in finding.message
    shutil.rmtree(vault_home / "blobs", ignore_errors=True)
    (vault_home / "blobs").write_text("not a folder")
    (broken,) = check_blob_store(Context())
    assert broken.status == FAILURE
