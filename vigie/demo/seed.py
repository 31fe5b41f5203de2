"""Seed the database with the synthetic clinic, through the same `ingest()` as real intake.

The demo must exercise the real paths: documents are encrypted by the vault exactly as in
production, so `make demo` also demonstrates that no plaintext reaches the disk.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction

from vigie.accounts.demo import enrol_totp
from vigie.accounts.models import Role, User
from vigie.demo.lab_messages import lab_message
from vigie.lib import durable
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.inspection import HL7_V2
from vigie.records.models import CareRelationship, Patient
from vigie.synthetic.clinic import Clinic, build_clinic
from vigie.synthetic.payloads import LabReport
from vigie.synthetic.pdf import render_document

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    totp_secret: str | None = None


def credentials_path() -> Path:
    return Path(settings.VIGIE_HOME) / "demo-credentials.json"


def _aware(day: date) -> datetime:
    return datetime.combine(day, time(8, 0), tzinfo=ZoneInfo(settings.TIME_ZONE))


def _write_credentials(logins: list[DemoLogin]) -> Path:
    path = credentials_path()
    payload: dict[str, Any] = {"users": [login.__dict__ for login in logins]}
    # Private (0600) from creation: the file holds working passwords, even if only demo ones.
    durable.write_new(path, [json.dumps(payload, indent=2).encode("utf-8") + b"\n"], replace=True)
    return path


def read_credentials() -> list[DemoLogin]:
    data = json.loads(credentials_path().read_text(encoding="utf-8"))
    return [DemoLogin(**user) for user in data["users"]]


def demo_rpps(index: int) -> str:
    """The demo's RPPS number for its `index`-th doctor (11 digits, none a real one's)."""
    return f"1999{index:07d}"


def _new_password() -> str:
    # Random even for the demo: a demo left reachable must not open with a known password.
    return secrets.token_urlsafe(12)


@transaction.atomic
def _create_people(clinic: Clinic) -> list[DemoLogin]:
    logins: list[DemoLogin] = []
    people: list[tuple[str, str, str, Role]] = [
        (d.username, d.given_name, d.family_name, Role.DOCTOR) for d in clinic.doctors
    ]
    people += [(u, "", "", Role.ADMIN) for u in clinic.admins]
    people += [(u, "", "", Role.AUDITOR) for u in clinic.auditors]
    for index, (username, first, last, role) in enumerate(people, start=1):
        password = _new_password()
        user = User(username=username, first_name=first, last_name=last, role=role)
        if role == Role.DOCTOR:
            # A made-up RPPS number, so that `make demo-psc` can show the Pro Santé Connect
            # sign-in (the tests' provider takes it as the card's identifier).
            user.rpps = demo_rpps(index)
        if role == Role.ADMIN:
            # Until the portal's own admin pages exist, IT works in Django's admin.
            user.is_staff = True
            user.is_superuser = True
        user.set_password(password)
        user.save()
        logins.append(
            DemoLogin(
                username=user.username,
                password=password,
                role=role.value,
                totp_secret=enrol_totp(user),
            )
        )
    for spec in clinic.patients:
        Patient.objects.create(
            ipp=spec.ipp,
            ins=spec.ins,
            family_name=spec.family_name,
            given_names=spec.given_names,
            birth_date=spec.birth_date,
            sex=spec.sex,
            address_line=spec.address_line,
            postal_code=spec.postal_code,
            city=spec.city,
        )
    doctors = {u.username: u for u in User.objects.filter(role=Role.DOCTOR)}
    admin = User.objects.filter(role=Role.ADMIN).first()
    patients = {p.ipp: p for p in Patient.objects.all()}
    for rel in clinic.relationships:
        CareRelationship.objects.create(
            doctor=doctors[rel.doctor_username],
            patient=patients[rel.patient_ipp],
            role=rel.role,
            valid_from=_aware(rel.valid_from),
            valid_until=_aware(rel.valid_until) if rel.valid_until else None,
            granted_by=admin,
        )
    return logins


def seed(clinic: Clinic | None = None, progress: Progress | None = None) -> list[DemoLogin]:
    """Seed once. A second call finds the clinic in place and returns the saved logins."""
    if Patient.objects.exists():
        return read_credentials()
    clinic = clinic or build_clinic()
    logins = _create_people(clinic)
    patients = {p.ipp: p for p in Patient.objects.all()}
    specs = {p.ipp: p for p in clinic.patients}
    total = len(clinic.documents)
    for index, doc in enumerate(clinic.documents, start=1):
        pdf = render_document(doc, specs[doc.patient_ipp])
        content, content_type = pdf, "application/pdf"
        results = None
        if isinstance(doc.payload, LabReport):
            # Lab reports arrive as a lab sends them: an ORU^R01 with the values, the PDF
            # embedded; the physician reads them as a table and in the patient's history.
            content, results = lab_message(doc, specs[doc.patient_ipp], pdf, doc.external_id)
            content_type = HL7_V2
        ingest(
            patients[doc.patient_ipp],
            DocumentMeta(
                kind=doc.kind,
                title=doc.title,
                clinical_date=doc.clinical_date,
                author=doc.author,
                source_system=doc.source_system,
                content_type=content_type,
            ),
            io.BytesIO(content),
            results=results,
            attachment=pdf if results is not None else None,
        )
        if progress is not None:
            progress(index, total)
    _write_credentials(logins)
    return logins
