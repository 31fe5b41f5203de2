"""The S3 store's configuration: refused with a clear line before any request is made.

No network here: the store itself is tested against a real S3 server in
tests/test_s3_store.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vigie.vault.errors import VaultError
from vigie.vault.s3store import S3BlobStore, S3Config, config_from_settings, make_client


def test_it_needs_a_bucket(settings) -> None:
    settings.VIGIE_S3_BUCKET = None
    with pytest.raises(VaultError, match="VIGIE_S3_BUCKET"):
        config_from_settings()


def test_it_reads_credentials_from_files_only(tmp_path: Path) -> None:
    config = S3Config(bucket="vigie-blobs")
    with pytest.raises(VaultError, match="VIGIE_S3_ACCESS_KEY_ID_FILE"):
        make_client(config)
    (tmp_path / "id").write_text("AKIA-TEST\n")
    (tmp_path / "secret").write_text("")
    config = S3Config(
        bucket="vigie-blobs",
        access_key_id_file=str(tmp_path / "id"),
        secret_access_key_file=str(tmp_path / "secret"),
    )
    with pytest.raises(VaultError, match=r"VIGIE_S3_SECRET_ACCESS_KEY_FILE=.* is empty"):
        make_client(config)
    config = S3Config(
        bucket="vigie-blobs",
        access_key_id_file=str(tmp_path / "id"),
        secret_access_key_file=str(tmp_path / "absent"),
    )
    with pytest.raises(VaultError, match="cannot read"):
        make_client(config)


def test_it_refuses_parts_smaller_than_s3_allows(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("x")
    (tmp_path / "secret").write_text("y")
    client = make_client(
        S3Config(
            bucket="vigie-blobs",
            endpoint_url="http://127.0.0.1:9",
            access_key_id_file=str(tmp_path / "id"),
            secret_access_key_file=str(tmp_path / "secret"),
        )
    )
    with pytest.raises(VaultError, match="minimum"):
        S3BlobStore(client, "vigie-blobs", part_size=1024)


def test_ids_never_climb_out_of_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("x")
    (tmp_path / "secret").write_text("y")
    client = make_client(
        S3Config(
            bucket="vigie-blobs",
            endpoint_url="http://127.0.0.1:9",
            access_key_id_file=str(tmp_path / "id"),
            secret_access_key_file=str(tmp_path / "secret"),
        )
    )
    store = S3BlobStore(client, "vigie-blobs", prefix="blobs/")
    assert store.key_for("AbCdEf0123456789_-xyz") == "blobs/AbCdEf0123456789_-xyz.blob"
    for bad in ("../../etc/passwd-012345", "a/b0123456789abcdef", "short"):
        with pytest.raises(VaultError, match="invalid blob id"):
            store.key_for(bad)
