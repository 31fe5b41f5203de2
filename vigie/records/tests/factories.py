"""Small builders for tests: a patient, a doctor, a stored document."""

from __future__ import annotations

import io
from datetime import date
from itertools import count

from vigie.accounts.models import Role, User
from vigie.records.identifiers import nir_key
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import Document, Patient

_seq = count(1)


def make_patient(family_name: str = "DURAND", *, with_ins: bool = True) -> Patient:
    n = next(_seq)
    body = f"2850375{n:03d}{n % 1000:03d}"
    return Patient.objects.create(
        ipp=f"IPP{n:07d}",
        ins=f"{body}{nir_key(body):02d}" if with_ins else None,
        family_name=family_name,
        given_names="Camille",
        birth_date=date(1985, 3, 14),
        sex="F",
    )


def make_doctor(username: str = "dr.test") -> User:
    return User.objects.create_user(username=f"{username}{next(_seq)}", role=Role.DOCTOR)


def make_document(patient: Patient, content: bytes = b"%PDF-1.4 test", **meta: object) -> Document:
    fields: dict[str, object] = {
        "kind": "lab_result",
        "title": "Numération formule sanguine",
        "clinical_date": date(2026, 11, 2),
        "source_system": "LABO-TEST",
        "author": "Dr Biologiste",
    }
    fields.update(meta)
    return ingest(patient, DocumentMeta(**fields), io.BytesIO(content))  # type: ignore[arg-type]
