"""A committed clinic with documents, and a place to back it up, for the backup tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vigie.records.models import Document, Patient


@dataclass
class Clinic:
    home: Path
    dest: Path
    patient: Patient
    documents: dict[str, bytes]


@pytest.fixture
def backup_home(tmp_path: Path, settings, vault_home: Path) -> Path:
    settings.VIGIE_AUDIT_CHECKPOINT_FILE = vault_home / "audit" / "checkpoints.jsonl"
    settings.VIGIE_POLICY_FILE = vault_home / "vigie-policy.toml"
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    return vault_home


@pytest.fixture
def clinic(
    backup_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    audit_committing: None,
) -> Clinic:
    """Five documents (one of several chunks) and their audit events, all committed."""
    import os

    from vigie.records.testing import make_document, make_patient

    patient = make_patient("SAUVEGARDE")
    contents = [b"%PDF-1.4 " + os.urandom(size) for size in (10, 2_000, 70_000, 200_000)]
    contents.append(b"%PDF-1.4 " + os.urandom(1_300_000))  # several vault chunks
    documents: dict[str, bytes] = {}
    for content in contents:
        document: Document = make_document(patient, content)
        documents[document.pk] = content
    # Apart from VIGIE_HOME (which is tmp_path): a backup inside it is refused.
    return Clinic(backup_home, tmp_path_factory.mktemp("dest"), patient, documents)
