"""The S3 blob store against a real S3 API server process on loopback (moto_server).

Every store operation the vault, fsck, key rotation, backup, restore, migrate and the REST and
hot-folder intakes use runs here on S3; write-once is the server's refusal (412), never a
check made on our side; a slow and a failing store answer 503 with nothing disclosed and
nothing half-stored.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from conftest import vault_keys_dir
from tests.s3server import StoreProxy, moto_server
from vigie import vault
from vigie.accounts.testing import log_in
from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.intake.folder import HotFolder
from vigie.intake.hl7.batch import handle_many
from vigie.intake.hl7.testing import Oru, biomed
from vigie.intake.rest.testing import metadata, new_key, pdf, send
from vigie.intake.testing import sidecar
from vigie.portal.testing import relate
from vigie.records import keys
from vigie.records.content import stream_verified
from vigie.records.fsck import fsck
from vigie.records.models import Document, PatientIdentifier, PendingDocument
from vigie.records.testing import lab_report_pdf, make_doctor, make_document, make_patient
from vigie.vault.migrate import migrate
from vigie.vault.s3store import S3BlobStore

pytestmark = pytest.mark.django_db

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def proxy(s3_url: str) -> Iterator[StoreProxy]:
    with StoreProxy(s3_url) as running:
        yield running


def _use_s3(settings: Any, home: Path, endpoint: str, **extra: Any) -> str:
    keys_dir = vault_keys_dir(home)
    (keys_dir / "s3-id").write_text("vigie-test-id\n")
    (keys_dir / "s3-secret").write_text("vigie-test-secret\n")
    bucket = f"vigie-{uuid.uuid4().hex[:16]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    settings.VIGIE_BLOB_STORE = "s3"
    settings.VIGIE_S3_ENDPOINT_URL = endpoint
    settings.VIGIE_S3_BUCKET = bucket
    settings.VIGIE_S3_ACCESS_KEY_ID_FILE = str(keys_dir / "s3-id")
    settings.VIGIE_S3_SECRET_ACCESS_KEY_FILE = str(keys_dir / "s3-secret")
    settings.VIGIE_S3_PART_SIZE = PART
    for name, value in extra.items():
        setattr(settings, name, value)
    return bucket


@pytest.fixture
def s3(settings: Any, vault_home: Path, s3_url: str) -> S3BlobStore:
    _use_s3(settings, vault_home, s3_url)
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False
    store = vault.get_blob_store()
    assert isinstance(store, S3BlobStore)
    return store


def _raw(store: S3BlobStore, blob_id: str) -> bytes:
    answer = store.client.get_object(Bucket=store.bucket, Key=store.key_for(blob_id))
    return bytes(answer["Body"].read())


# -- the vault ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, 2 * PART + 12345])
def test_it_seals_and_opens_documents_small_and_multipart(s3: S3BlobStore, size: int) -> None:
    content = os.urandom(size)
    sealed = vault.seal("doc-0123456789abcdef", io.BytesIO(content), max_size=None)
    assert (
        b"".join(vault.open("doc-0123456789abcdef", sealed.kek_id, sealed.wrapped_key)) == content
    )
    assert list(s3.iter_ids()) == ["doc-0123456789abcdef"]
    stored = _raw(s3, "doc-0123456789abcdef")
    # Ciphertext only: no run of the plaintext reaches the bucket, nor any key.
    if size:
        assert content[:64] not in stored
    assert list(s3.unfinished_writes()) == []


def test_it_records_the_sha256_it_sends(s3: S3BlobStore) -> None:
    vault.seal("sum-0123456789abcdef", io.BytesIO(b"%PDF checked"))
    head = s3.client.head_object(
        Bucket=s3.bucket, Key=s3.key_for("sum-0123456789abcdef"), ChecksumMode="ENABLED"
    )
    digest = hashlib.sha256(_raw(s3, "sum-0123456789abcdef")).digest()
    assert head["ChecksumSHA256"] == base64.b64encode(digest).decode()


def test_attack_bytes_that_differ_from_the_recorded_checksum_are_refused_on_read(
    s3: S3BlobStore,
) -> None:
    # moto, unlike AWS, stores a PUT whose body does not match its x-amz-checksum-sha256:
    # that stands in for an object damaged at rest. Every AES-GCM chunk still authenticates
    # (the bytes are the genuine blob), so only the whole-object check can see it.
    patient = make_patient()
    document = make_document(patient, b"%PDF-1.4 " + os.urandom(100_000))
    genuine = _raw(s3, document.pk)
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.key_for(document.pk))
    s3.client.put_object(
        Bucket=s3.bucket,
        Key=s3.key_for(document.pk),
        Body=genuine,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
    )
    with pytest.raises(vault.IntegrityError, match="checksum"):
        b"".join(stream_verified(document))


@pytest.mark.parametrize("size", [100, PART + 1])
def test_attack_overwrite_is_refused_by_the_server(s3: S3BlobStore, size: int) -> None:
    # Race: another writer stores the blob after our existence check, before our upload
    # completes. Only the server's If-None-Match refusal can stop this overwrite.
    blob_id = "race-0123456789abcdef"
    first = os.urandom(size)

    def ours() -> Iterator[bytes]:
        s3.client.put_object(Bucket=s3.bucket, Key=s3.key_for(blob_id), Body=first)
        yield b"x" * size

    with pytest.raises(vault.VaultError, match="write-once"):
        s3.write(blob_id, ours())
    assert _raw(s3, blob_id) == first
    assert list(s3.unfinished_writes()) == []  # the multipart attempt was aborted


def test_attack_a_store_that_cannot_refuse_an_overwrite_is_refused_at_start(
    settings: Any, vault_home: Path, proxy: StoreProxy
) -> None:
    from vigie.startup import StartupError, _check_blob_store

    _use_s3(settings, vault_home, proxy.url)
    proxy.mode = "forgetful"
    try:
        with pytest.raises(StartupError, match="does not refuse to overwrite"):
            _check_blob_store()
        with pytest.raises(vault.VaultError, match="does not refuse to overwrite"):
            vault.get_blob_store()
    finally:
        proxy.mode = "pass"
    _check_blob_store()  # the same server through an honest path is accepted


def test_attack_a_corrupted_object_is_detected(s3: S3BlobStore) -> None:
    patient = make_patient()
    document = make_document(patient, b"%PDF-1.4 " + os.urandom(300_000))
    blob = bytearray(_raw(s3, document.pk))
    blob[200_000] ^= 1
    # Written around the vault (no condition): what a compromised or faulty server might hold.
    s3.client.put_object(Bucket=s3.bucket, Key=s3.key_for(document.pk), Body=bytes(blob))
    with pytest.raises(vault.IntegrityError):
        b"".join(stream_verified(document))
    report = fsck()
    assert [pk for pk, _ in report.corrupt] == [document.pk]


# -- fsck, rotation, backup, restore, migrate -------------------------------------------------


def test_fsck_finds_missing_orphans_and_unfinished_uploads_and_repairs(s3: S3BlobStore) -> None:
    patient = make_patient()
    kept = make_document(patient, b"%PDF kept")
    gone = make_document(patient, b"%PDF gone")
    s3.delete(gone.pk)
    vault.seal("orphan-0123456789abcd", io.BytesIO(b"x"), store=s3)
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key=s3.key_for("crashed-0123456789ab"))
    assert fsck(grace=3600).young_orphans == ["orphan-0123456789abcd"]
    report = fsck(repair=True, grace=0)
    assert report.missing == [gone.pk]
    assert report.orphan_blobs == ["orphan-0123456789abcd"]
    assert len(report.stale_temp_files) == 1
    assert set(s3.iter_ids()) == {kept.pk}
    assert list(s3.unfinished_writes()) == []
    assert fsck().clean


def test_key_rotation_rewraps_without_touching_the_objects(s3: S3BlobStore) -> None:
    patient = make_patient()
    documents = [make_document(patient, f"%PDF {i}".encode()) for i in range(3)]
    before = {d.pk: _raw(s3, d.pk) for d in documents}
    result = keys.rotate()
    assert result.rewrapped == 3
    for document in documents:
        document.refresh_from_db()
        assert document.kek_id == result.new_kek_id
        b"".join(stream_verified(document))
        assert _raw(s3, document.pk) == before[document.pk]


def test_backup_create_verify_and_restore_blobs_from_and_to_s3(
    audit_committing: None,
    s3: S3BlobStore,
    settings: Any,
    vault_home: Path,
    s3_url: str,
    tmp_path_factory: Any,
) -> None:
    from vigie.audit.checkpoints import ensure_signing_key, load_signing_key
    from vigie.backup.create import create
    from vigie.backup.destination import Destination
    from vigie.backup.restore import RestoreResult, _restore_blobs
    from vigie.backup.verify import verify_snapshot

    settings.VIGIE_AUDIT_CHECKPOINT_FILE = vault_home / "audit" / "checkpoints.jsonl"
    settings.VIGIE_POLICY_FILE = vault_home / "vigie-policy.toml"
    ensure_signing_key()
    patient = make_patient("SAUVEGARDE")
    contents = [b"%PDF-1.4 " + os.urandom(n) for n in (10, 70_000, PART + 3)]
    documents = {make_document(patient, c).pk: c for c in contents}
    dest = tmp_path_factory.mktemp("dest")
    result = create(dest)
    assert result.copied == 3
    for blob_id in documents:
        assert Destination(dest).blobs.path_for(blob_id).read_bytes() == _raw(s3, blob_id)
    report = verify_snapshot(
        dest, public_key=load_signing_key().public_key(), keyring=vault.get_keyring()
    )
    assert report.problems == []
    # Restore's blob step into an empty bucket: every blob written through the S3 store.
    _use_s3(settings, vault_home, s3_url)
    target = vault.get_blob_store()
    assert list(target.iter_ids()) == []
    manifest = Destination(dest).manifest(result.snapshot_id, load_signing_key().public_key())
    _restore_blobs(Destination(dest), manifest, RestoreResult(result.snapshot_id), None)
    for document in Document.objects.all():
        assert b"".join(stream_verified(document)) == documents[document.pk]


def test_migrate_copies_every_blob_verified_and_resumes(
    settings: Any, vault_home: Path, s3_url: str
) -> None:
    patient = make_patient()
    documents = [make_document(patient, b"%PDF " + os.urandom(n)) for n in (5, 90_000, 300)]
    source = vault.get_store()
    bucket = _use_s3(settings, vault_home, s3_url)
    settings.VIGIE_BLOB_STORE = "file"
    out = io.StringIO()
    call_command("vault", "migrate", "--to", f"s3://{bucket}/moved", stdout=out)
    assert "3 copied" in out.getvalue()
    settings.VIGIE_BLOB_STORE = "s3"
    settings.VIGIE_S3_PREFIX = "moved/"
    target = vault.get_blob_store()
    assert sorted(target.iter_ids()) == sorted(d.pk for d in documents)
    for document in documents:
        assert b"".join(stream_verified(document))
        with target.open(document.pk) as moved:
            assert moved.read() == source.path_for(document.pk).read_bytes()
    # Run again (an interrupted migration resumed): nothing copied twice, all compared.
    again = migrate(source, target)
    assert (again.copied, again.already_there) == (0, 3)


# -- intake ---------------------------------------------------------------------------------


def test_rest_ingest_stores_on_s3(s3: S3BlobStore) -> None:
    _key, text = new_key("labo-bio")
    patient = make_patient("MARTINEAU")
    content = pdf()
    response = send(Client(), text, content=content, meta=metadata(ins=patient.ins))
    assert response.status_code == 202, response.content
    document = Document.objects.get(pk=response.json()["id"])
    assert s3.exists(document.pk)
    assert b"".join(stream_verified(document)) == content


def test_hot_folder_ingest_stores_on_s3(s3: S3BlobStore, tmp_path_factory: Any) -> None:
    drop, outbox = tmp_path_factory.mktemp("drop"), tmp_path_factory.mktemp("outbox")
    patient = make_patient("DOSSIER")
    content = lab_report_pdf()
    (drop / "CR-1.json").write_text(json.dumps(sidecar(patient)))
    (drop / "CR-1.pdf").write_bytes(content)
    hot = HotFolder(drop, outbox, source_system="LABO-CENTRAL", settle=0, out=io.StringIO())
    hot.prepare()
    try:
        found, _settling = hot.scan()
    finally:
        hot.close()
    assert [o.status for o in found] == ["stored"]
    document = Document.objects.get(pk=found[0].document_id)
    assert b"".join(stream_verified(document)) == content
    assert list(s3.iter_ids()) == [document.pk]


def test_an_mllp_round_stores_on_s3(s3: S3BlobStore) -> None:
    # The MLLP group commit on a store whose writes are durable one by one (no shared
    # fsync): every message of the round stored once, a refused one leaves no object.
    patient = make_patient("DURAND")
    PatientIdentifier.objects.create(patient=patient, source="BIOMED", value="L123456")
    replies = handle_many(
        [
            (Oru(control_id="S3-A").encode(), biomed()),
            (Oru(control_id="S3-BAD", ipp="", ins="285037500100133").encode(), biomed()),
            (Oru(control_id="S3-B").encode(), biomed()),
        ]
    )
    assert [r.code for r in replies] == ["AA", "AE", "AA"]
    stored = [Document.objects.get(pk=r.document_id) for r in (replies[0], replies[2])]
    assert sorted(s3.iter_ids()) == sorted(d.pk for d in stored)
    for document, control_id in zip(stored, ("S3-A", "S3-B"), strict=True):
        assert b"".join(stream_verified(document)) == Oru(control_id=control_id).encode()


# -- a slow and a failing store --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["slow", "fail"])
def test_a_slow_or_failing_store_answers_503_and_discloses_nothing(
    settings: Any, vault_home: Path, proxy: StoreProxy, mode: str, tmp_path_factory: Any
) -> None:
    drop, outbox = tmp_path_factory.mktemp("drop"), tmp_path_factory.mktemp("outbox")
    _use_s3(
        settings,
        vault_home,
        proxy.url,
        VIGIE_S3_READ_TIMEOUT=1,
        VIGIE_S3_CONNECT_TIMEOUT=1,
        VIGIE_S3_MAX_ATTEMPTS=2,
        VIGIE_AUDIT_GROUP_COMMIT=False,
        SECURE_SSL_REDIRECT=False,
    )
    doctor = make_doctor("dr.s3")
    patient = make_patient("LENTEUR")
    relate(doctor, patient)
    secret = b"%PDF-1.4 " + b"confidential-bytes " * 500
    document = make_document(patient, secret)
    client = Client()
    log_in(client, doctor)
    _key, text = new_key("labo-bio")
    proxy.mode = mode
    try:
        response = client.get(reverse("portal:document_content", args=[document.pk]))
        assert response.status_code == 503
        assert b"confidential-bytes" not in response.content
        assert response["Retry-After"]
        failed = AuditEvent.objects.filter(action="document.read.failed").get()
        assert failed.reason == "StoreUnavailable"
        # No integrity alarm: the document is not damaged, the store is away.
        assert not Alert.objects.filter(kind="vault.integrity").exists()
        sent = send(Client(), text, content=pdf(), meta=metadata(ins=patient.ins))
        assert sent.status_code == 503, sent.content
        (drop / "CR-2.json").write_text(json.dumps(sidecar(patient)))
        (drop / "CR-2.pdf").write_bytes(lab_report_pdf())
        hot = HotFolder(drop, outbox, source_system="LABO-CENTRAL", settle=0, out=io.StringIO())
        hot.prepare()
        try:
            found, _settling = hot.scan()
        finally:
            hot.close()
        assert found == []
        assert (drop / "CR-2.pdf").exists()  # left where it came from, for the next pass
    finally:
        proxy.mode = "pass"
    # Nothing half-stored: one document (the first), no pending row, no open upload.
    assert Document.objects.count() == 1
    assert PendingDocument.objects.count() == 0
    store = vault.get_blob_store()
    assert list(store.iter_ids()) == [document.pk]
    assert list(store.unfinished_writes()) == []
    assert (
        hashlib.sha256(b"".join(stream_verified(document))).digest()
        == hashlib.sha256(secret).digest()
    )
