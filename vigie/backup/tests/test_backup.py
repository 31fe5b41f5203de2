"""Backups: consistent, incremental, and every kind of tampering named by `verify`."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from vigie import vault
from vigie.audit.checkpoints import load_signing_key
from vigie.audit.log import record
from vigie.backup.create import BackupError, create
from vigie.backup.destination import Destination
from vigie.backup.manifest import MANIFEST_NAME, ManifestError, sign
from vigie.backup.verify import VerifyReport, verify_snapshot
from vigie.records.ingest import DocumentMeta
from vigie.records.models import PendingDocument
from vigie.records.receive import Sender, receive
from vigie.records.testing import lab_report_pdf, make_document

from .conftest import Clinic


def _verify(clinic: Clinic, snapshot_id: str | None = None) -> VerifyReport:
    return verify_snapshot(
        clinic.dest,
        public_key=load_signing_key().public_key(),
        keyring=vault.get_keyring(),
        snapshot_id=snapshot_id,
    )


def test_a_fresh_backup_verifies_every_document_and_the_audit_chain(clinic: Clinic) -> None:
    result = create(clinic.dest)
    assert result.documents == len(clinic.documents)
    assert result.copied == len(clinic.documents)
    report = _verify(clinic)
    assert report.problems == []
    assert report.documents == len(clinic.documents)
    assert report.audit_events >= len(clinic.documents)  # one ingest event each
    assert report.audit_checkpoints >= 1
    manifest = Destination(clinic.dest).manifest(result.snapshot_id, None)
    assert manifest.body["audit"]["latest_checkpoint"]["seq"] == result.audit_seq


def test_blobs_in_the_backup_are_the_encrypted_ones_never_plaintext(clinic: Clinic) -> None:
    create(clinic.dest)
    store = Destination(clinic.dest).blobs
    for document_id, content in clinic.documents.items():
        stored = store.path_for(document_id).read_bytes()
        assert stored == vault.get_store().path_for(document_id).read_bytes()
        assert content[:64] not in stored


def test_a_second_backup_copies_only_what_is_new(clinic: Clinic) -> None:
    first = create(clinic.dest)
    new = make_document(clinic.patient, b"%PDF-1.4 nouveau")
    second = create(clinic.dest)
    assert first.snapshot_id != second.snapshot_id
    assert (second.copied, second.reused) == (1, len(clinic.documents))
    assert second.documents == len(clinic.documents) + 1
    assert _verify(clinic, second.snapshot_id).problems == []
    # The older snapshot still stands on its own: it does not know the new document.
    old = _verify(clinic, first.snapshot_id)
    assert old.problems == []
    assert old.documents == len(clinic.documents)
    assert new.pk not in {
        b.id for b in Destination(clinic.dest).manifest(first.snapshot_id, None).blobs()
    }


def test_documents_waiting_for_reconciliation_are_backed_up_too(clinic: Clinic) -> None:
    outcome = receive(
        Sender(ipp="IPP-UNKNOWN-1", ipp_source="LABO-X", family_name="INCONNU"),
        DocumentMeta(
            kind="lab_result",
            title="Bilan",
            clinical_date=date(2026, 11, 2),
            source_system="LABO-X",
        ),
        lab_report_pdf(),
        channel="rest",
    )
    pending = PendingDocument.objects.get()
    assert outcome is not None
    result = create(clinic.dest)
    assert result.pending == 1
    report = _verify(clinic)
    assert report.problems == []
    assert report.pending == 1
    assert Destination(clinic.dest).blobs.exists(pending.pk)


def test_a_row_whose_blob_is_gone_fails_the_backup_loudly(clinic: Clinic) -> None:
    victim = next(iter(clinic.documents))
    vault.get_store().path_for(victim).unlink()
    with pytest.raises(BackupError, match=f"document {victim} has a row but no blob"):
        create(clinic.dest)
    assert Destination(clinic.dest).snapshot_ids() == []  # nothing half-published


def test_a_backup_inside_vigie_home_is_refused(clinic: Clinic) -> None:
    with pytest.raises(BackupError, match="inside VIGIE_HOME"):
        create(Path(settings.VIGIE_HOME) / "backups")


# --- tampering: each kind is named ------------------------------------------------------------


@pytest.fixture
def backed_up(clinic: Clinic) -> tuple[Clinic, str]:
    return clinic, create(clinic.dest).snapshot_id


def test_a_changed_blob_is_named(backed_up) -> None:
    clinic, _ = backed_up
    victim = max(clinic.documents, key=lambda pk: len(clinic.documents[pk]))
    path = Destination(clinic.dest).blobs.path_for(victim)
    data = bytearray(path.read_bytes())
    data[100_000] ^= 0x01  # one bit, deep inside
    path.chmod(0o600)
    path.write_bytes(bytes(data))
    report = _verify(clinic)
    assert not report.ok
    assert any(f"blob {victim} was changed after the backup" in p for p in report.problems)
    assert len(report.problems) == 1


def test_a_removed_blob_is_named(backed_up) -> None:
    clinic, _ = backed_up
    victim = sorted(clinic.documents)[0]
    Destination(clinic.dest).blobs.path_for(victim).unlink()
    report = _verify(clinic)
    assert [p for p in report.problems if victim in p] == [
        f"blob {victim} is missing from {Destination(clinic.dest).blobs.root}"
    ]


def test_an_edited_manifest_is_named(backed_up) -> None:
    clinic, snapshot_id = backed_up
    path = Destination(clinic.dest).snapshot_dir(snapshot_id) / MANIFEST_NAME
    document = json.loads(path.read_text())
    document["manifest"]["blobs"].pop()  # hide a document from the backup's inventory
    path.write_text(json.dumps(document))
    report = _verify(clinic)
    assert len(report.problems) == 1
    assert (
        "the signature does not match the content (the manifest was edited)" in (report.problems[0])
    )


def test_a_manifest_re_signed_with_another_key_is_refused(backed_up) -> None:
    clinic, snapshot_id = backed_up
    path = Destination(clinic.dest).snapshot_dir(snapshot_id) / MANIFEST_NAME
    body = json.loads(path.read_text())["manifest"]
    body["documents"] = 0
    path.write_bytes(sign(body, Ed25519PrivateKey.generate()))
    report = _verify(clinic)
    assert len(report.problems) == 1
    assert "not by this installation's key" in report.problems[0]


def test_a_swapped_database_is_named(backed_up) -> None:
    clinic, first = backed_up
    make_document(clinic.patient, b"%PDF-1.4 plus tard")
    record("test.event")
    second = create(clinic.dest).snapshot_id
    dest = Destination(clinic.dest)
    name = dest.manifest(first, None).file("database")["name"]
    # The older snapshot's database put in place of the newer one's.
    target = dest.snapshot_dir(second) / name
    target.chmod(0o600)
    shutil.copyfile(dest.snapshot_dir(first) / name, target)
    report = _verify(clinic, second)
    assert report.problems[0] == (
        f"database file {name} does not match the manifest's SHA-256 "
        "(the database was swapped or altered)"
    )
    # And nothing is read from a database that cannot be trusted.
    assert report.documents == 0


def test_a_snapshot_verified_with_the_wrong_keyring_is_refused(backed_up, tmp_path) -> None:
    clinic, _ = backed_up
    stranger = vault.Keyring.create(tmp_path / "other" / "keyring.json")
    report = verify_snapshot(
        clinic.dest, public_key=load_signing_key().public_key(), keyring=stranger
    )
    # The database is sealed too: without the right keyring nothing of the snapshot opens.
    [problem] = report.problems
    name = Destination(clinic.dest).manifest(report.snapshot_id, None).file("database")["name"]
    assert problem.startswith(f"database: database file {name} cannot be opened")
    assert "unknown key id" in problem
    assert report.documents == 0


def test_a_truncated_manifest_is_named(backed_up) -> None:
    clinic, snapshot_id = backed_up
    path = Destination(clinic.dest).snapshot_dir(snapshot_id) / MANIFEST_NAME
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ManifestError, match="not a signed Vigie backup manifest"):
        Destination(clinic.dest).manifest(snapshot_id, load_signing_key().public_key())
    assert "manifest:" in _verify(clinic).problems[0]


def test_an_interrupted_backup_leaves_no_snapshot_and_its_blobs_are_not_trusted(
    clinic: Clinic,
) -> None:
    # What a backup killed mid-copy leaves: a partial folder and blobs no manifest lists,
    # one of them cut short.
    dest = Destination(clinic.dest)
    victim = max(clinic.documents, key=lambda pk: len(clinic.documents[pk]))
    source = vault.get_store().path_for(victim).read_bytes()
    dest.blobs.write(victim, [source[: len(source) // 2]])
    (dest.snapshots_dir / ".partial-20261130T000000Z-abcdef").mkdir(parents=True)
    assert dest.snapshot_ids() == []
    result = create(clinic.dest)
    assert result.copied == len(clinic.documents)  # the planted half blob was replaced
    assert dest.blobs.path_for(victim).read_bytes() == source
    assert _verify(clinic).problems == []


# --- a stolen backup disk reveals nothing (issue 16) ------------------------------------------


def _every_file(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*")) if path.is_file()]


def test_attack_a_stolen_snapshot_holds_no_patient_data_in_clear(clinic: Clinic) -> None:
    settings.VIGIE_POLICY_FILE.write_text('[exposure]\nlisten = "internal"\n')
    result = create(clinic.dest)
    patient = clinic.patient
    needles = [
        patient.family_name.encode(),
        patient.ipp.encode(),
        patient.birth_date.isoformat().encode(),
        b"SQLite format 3",
        b"PGDMP",  # pg_dump's custom-format magic
        b"exposure",
    ]
    for path in _every_file(clinic.dest):
        content = path.read_bytes()
        assert [n for n in needles if n in content] == [], path
    manifest = Destination(clinic.dest).manifest(result.snapshot_id, None)
    assert manifest.encrypted
    assert sorted(manifest.body["files"]) == ["checkpoints", "database", "policy"]
    for role in manifest.body["files"]:
        assert manifest.file(role)["name"].endswith(".sealed")
        entry = manifest.sealed(role)
        assert entry is not None
        assert entry.kek_id == vault.get_keyring().active_id


def test_it_writes_every_file_0600_and_every_folder_0700_whatever_the_umask(
    clinic: Clinic,
) -> None:
    import os
    import stat

    settings.VIGIE_POLICY_FILE.write_text("# policy\n")
    clinic.dest.chmod(0o755)  # a folder made beforehand, as a mount point often is
    umask = os.umask(0)
    try:
        create(clinic.dest)
    finally:
        os.umask(umask)
    paths = [clinic.dest, *sorted(clinic.dest.rglob("*"))]
    modes = {str(p): stat.S_IMODE(p.lstat().st_mode) for p in paths}
    expected = {str(p): 0o700 if p.is_dir() else 0o600 for p in paths}
    assert modes == expected


def test_a_sealed_file_moved_from_another_snapshot_is_named(clinic: Clinic) -> None:
    first = create(clinic.dest).snapshot_id
    make_document(clinic.patient, b"%PDF-1.4 plus tard")
    second = create(clinic.dest).snapshot_id
    dest = Destination(clinic.dest)
    name = dest.manifest(first, None).file("checkpoints")["name"]
    target = dest.snapshot_dir(second) / name
    shutil.copyfile(dest.snapshot_dir(first) / name, target)
    report = _verify(clinic, second)
    assert report.problems[0] == (
        f"checkpoints file {name} does not match the manifest's SHA-256 "
        "(it was altered after the backup)"
    )


def _as_clear_format(clinic: Clinic, snapshot_id: str) -> None:
    """Rewrite a snapshot as `vigie backup create` wrote it before issue 16: files in clear."""
    from vigie.backup.create import file_entry

    dest = Destination(clinic.dest)
    folder = dest.snapshot_dir(snapshot_id)
    manifest = dest.manifest(snapshot_id, None)
    body = json.loads(json.dumps(manifest.body))
    for role, entry in body["files"].items():
        clear = folder / entry["name"].removesuffix(".sealed")
        manifest.extract(role, folder, clear, vault.get_keyring())
        (folder / entry["name"]).unlink()
        body["files"][role] = file_entry(clear)
    body["format"] = "vigie-backup-1"
    (folder / MANIFEST_NAME).write_bytes(sign(body, load_signing_key()))


def test_a_snapshot_of_the_clear_format_still_verifies_and_says_to_prune_it(
    clinic: Clinic,
) -> None:
    # Refusing them would leave a clinic without its older backups on the day it upgrades.
    snapshot_id = create(clinic.dest).snapshot_id
    _as_clear_format(clinic, snapshot_id)
    report = _verify(clinic)
    assert report.problems == []
    assert report.documents == len(clinic.documents)
    assert report.warnings == [
        f"snapshot {snapshot_id} predates encrypted backups: its database is in clear on the "
        "backup disk; once a newer snapshot verifies, prune this one (`vigie backup prune`)"
    ]
    # The next backup is sealed again, and reuses the blobs.
    again = create(clinic.dest)
    assert again.reused == len(clinic.documents)
    assert _verify(clinic, again.snapshot_id).warnings == []
