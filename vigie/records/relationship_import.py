"""Bulk import of care relationships from a CSV file: `vigie relationships import FILE`.

The file's shape (UTF-8, `;` or `,`, a header line) is read by `vigie.lib.csvtable`; the
check-everything-then-create-all run is `vigie.lib.csvimport.run_import` (issue 9).

Care relationships (one grant per line)::

    doctor;patient_ipp;role;valid_from;valid_until
    dr.martin;IPP0001234;treating;01/01/2027;31/12/2027

* `doctor` (médecin, username): the username of an existing doctor account.
* `patient_ipp` (ipp) and/or `patient_ins` (ins): the patient; at least one column, and at
  least one value per line; when both are given they must designate the same patient.
* `role`: `treating`, `referring`, `consulting`, or their labels in English or French
  ("Médecin traitant", "traitant", "Médecin adresseur", "adresseur", "Spécialiste
  consultant", "consultant"), any case, accents optional.
* `valid_from` (début): required; `valid_until` (fin): optional (open-ended). A date is
  `YYYY-MM-DD` or `DD/MM/YYYY`, in clinic time; an ISO date-time `YYYY-MM-DDTHH:MM` is also
  accepted. A date-only `valid_until` is inclusive: the access ends at the end of that day.
* A line whose doctor and patient already have a relationship over an overlapping period (in
  the database or on another line of the file) is an error: re-running a file grants nothing
  twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.db.models.functions import Lower
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.lib.csvimport import ImportReport, Progress, run_import
from vigie.lib.csvtable import EMPTY, LineError, Table, chunks, fold, parse_date, read_table, short
from vigie.records.identifiers import InvalidIdentifier, normalize_nir, validate_ipp
from vigie.records.models import CareRelationship, CareRole, Patient

RELATIONSHIP_COLUMNS: dict[str, tuple[str, ...]] = {
    "doctor": ("doctor", "doctor_username", "username", "medecin", "identifiant_medecin"),
    "patient_ipp": ("patient_ipp", "ipp", "ipp_patient"),
    "patient_ins": ("patient_ins", "ins", "ins_patient"),
    "role": ("role", "role_de_soin", "type"),
    "valid_from": ("valid_from", "from", "debut", "date_debut", "date_de_debut", "du"),
    "valid_until": ("valid_until", "until", "fin", "date_fin", "date_de_fin", "au"),
}
RELATIONSHIP_REQUIRED = ("doctor", "role", "valid_from")

_ROLE_WORDS: dict[str, str] = {
    "treating physician": CareRole.TREATING,
    "medecin traitant": CareRole.TREATING,
    "traitant": CareRole.TREATING,
    "referring physician": CareRole.REFERRING,
    "medecin adresseur": CareRole.REFERRING,
    "adresseur": CareRole.REFERRING,
    "consulting specialist": CareRole.CONSULTING,
    "specialiste consultant": CareRole.CONSULTING,
    "consultant": CareRole.CONSULTING,
}


@dataclass(frozen=True)
class RelationshipRow:
    line: int
    doctor: User
    patient: Patient
    role: str
    valid_from: datetime
    valid_until: datetime | None


def parse_role(value: str) -> str:
    folded = fold(value)
    for role in CareRole:
        if folded == role.value:
            return role.value
    found = _ROLE_WORDS.get(folded)
    if found is None:
        known = ", ".join(r.value for r in CareRole)
        raise ValueError(f"unknown role “{value}” (expected {known}, or its French label)")
    return str(found)


# --------------------------------------------------------------------------------------
# Care relationships


def _overlaps(
    a_from: datetime, a_until: datetime | None, b_from: datetime, b_until: datetime | None
) -> bool:
    return (b_until is None or a_from < b_until) and (a_until is None or b_from < a_until)


def _period(start: datetime, end: datetime | None) -> str:
    """ "from 01/01/2027 through 31/12/2027" (an end at midnight is the day before, inclusive,
    as the file says it), or with times when they are not midnight."""

    def local(moment: datetime) -> datetime:
        return timezone.localtime(moment)

    begin = local(start)
    text = f"from {begin:%d/%m/%Y}" if begin.time() == time.min else f"from {begin:%d/%m/%Y %H:%M}"
    if end is None:
        return text + ", open-ended"
    finish = local(end)
    if finish.time() == time.min:
        return text + f" through {finish.date() - timedelta(days=1):%d/%m/%Y}"
    return text + f" until {finish:%d/%m/%Y %H:%M}"


def validate_relationships(text: str) -> tuple[Table, list[RelationshipRow]]:
    table = read_table(text, RELATIONSHIP_COLUMNS, RELATIONSHIP_REQUIRED)
    if table.columns and not ({"patient_ipp", "patient_ins"} & set(table.columns)):
        table.errors.append(LineError(1, "missing column: patient_ipp (or ipp) or patient_ins"))
        table.rows = []
    usernames = {User.normalize_username(v.get("doctor", "")) for _, v in table.rows}
    doctors: dict[str, User] = {}
    for batch in chunks(u for u in usernames if u):
        for user in User.objects.annotate(key=Lower("username")).filter(key__in=batch):
            doctors[user.username.lower()] = user
    ipps = {v.get("patient_ipp", "") for _, v in table.rows} - {""}
    by_ipp: dict[str, Patient] = {}
    for batch in chunks(ipps):
        by_ipp.update({p.ipp: p for p in Patient.objects.filter(ipp__in=batch)})
    inses = {normalize_nir(v.get("patient_ins", "")) for _, v in table.rows} - {""}
    by_ins: dict[str, Patient] = {}
    for batch in chunks(inses):
        by_ins.update({p.ins: p for p in Patient.objects.filter(ins__in=batch) if p.ins})

    parsed: list[RelationshipRow] = []
    for line, values in table.rows:
        problems: list[str] = []
        doctor = _resolve_doctor(values.get("doctor", ""), doctors, problems)
        patient = _resolve_patient(values, by_ipp, by_ins, problems)
        role = ""
        try:
            role = parse_role(values.get("role", "")) if values.get("role") else ""
            if not role:
                problems.append("role is empty")
        except ValueError as exc:
            problems.append(str(exc))
        start = end = None
        raw_from, raw_until = values.get("valid_from", ""), values.get("valid_until", "")
        if raw_from in EMPTY:
            problems.append("valid_from is empty")
        else:
            try:
                start = parse_date(raw_from)
            except ValueError as exc:
                problems.append(f"valid_from: {exc}")
        if raw_until not in EMPTY:
            try:
                end = parse_date(raw_until, end_of_day=True)
            except ValueError as exc:
                problems.append(f"valid_until: {exc}")
        if start is not None and end is not None and end <= start:
            problems.append(f"valid_until ({raw_until}) is before valid_from ({raw_from})")
        if problems or doctor is None or patient is None or start is None:
            table.errors.append(LineError(line, "; ".join(problems)))
            continue
        parsed.append(RelationshipRow(line, doctor, patient, role, start, end))

    good = _without_duplicates(parsed, table)
    table.errors.sort(key=lambda e: e.line)
    return table, good


def _resolve_doctor(raw: str, doctors: dict[str, User], problems: list[str]) -> User | None:
    username = User.normalize_username(raw)
    if not username:
        problems.append("doctor is empty")
        return None
    user = doctors.get(username)
    if user is None:
        problems.append(f"unknown doctor “{short(username)}” (no account with that username)")
        return None
    if user.role != Role.DOCTOR:
        problems.append(f"“{username}” is not a doctor (role: {user.role})")
        return None
    return user


def _resolve_patient(
    values: dict[str, str],
    by_ipp: dict[str, Patient],
    by_ins: dict[str, Patient],
    problems: list[str],
) -> Patient | None:
    ipp, ins = values.get("patient_ipp", ""), normalize_nir(values.get("patient_ins", ""))
    if not ipp and not ins:
        problems.append("no patient IPP or INS")
        return None
    found: Patient | None = None
    if ipp:
        found = by_ipp.get(ipp)
        if found is None:
            try:
                validate_ipp(ipp)
                problems.append(f"unknown patient IPP “{short(ipp)}”")
            except InvalidIdentifier as exc:
                problems.append(f"patient IPP “{short(ipp)}”: {exc}")
            return None
    if ins:
        other = by_ins.get(ins)
        if other is None:
            problems.append(f"unknown patient INS “{short(ins)}”")
            return None
        if found is not None and found.pk != other.pk:
            problems.append(f"IPP “{ipp}” and INS “{ins}” are two different patients")
            return None
        found = other
    return found


def _without_duplicates(rows: list[RelationshipRow], table: Table) -> list[RelationshipRow]:
    pairs = {(r.doctor.pk, r.patient.pk) for r in rows}
    existing: dict[tuple[int, int], list[CareRelationship]] = defaultdict(list)
    for batch in chunks(sorted({d for d, _ in pairs})):
        for rel in CareRelationship.objects.filter(doctor_id__in=batch).order_by("pk"):
            key = (rel.doctor_id, rel.patient_id)
            if key in pairs:
                existing[key].append(rel)
    kept: dict[tuple[int, int], list[RelationshipRow]] = defaultdict(list)
    good: list[RelationshipRow] = []
    for row in rows:
        key = (row.doctor.pk, row.patient.pk)
        clash = next(
            (
                r
                for r in existing[key]
                if _overlaps(row.valid_from, row.valid_until, r.valid_from, r.valid_until)
            ),
            None,
        )
        if clash is not None:
            table.errors.append(
                LineError(
                    row.line,
                    f"duplicate: {row.doctor.username} already has a relationship with patient "
                    f"{row.patient.ipp} over this period ({clash.role}, "
                    f"{_period(clash.valid_from, clash.valid_until)})",
                )
            )
            continue
        twin = next(
            (
                r
                for r in kept[key]
                if _overlaps(row.valid_from, row.valid_until, r.valid_from, r.valid_until)
            ),
            None,
        )
        if twin is not None:
            table.errors.append(
                LineError(
                    row.line,
                    f"duplicate of line {twin.line} (same doctor and patient, overlapping period)",
                )
            )
            continue
        kept[key].append(row)
        good.append(row)
    return good


def _create_relationships(
    rows: list[RelationshipRow], report: ImportReport, operator: str, progress: Progress | None
) -> None:
    from vigie.audit.log import record

    for done, row in enumerate(rows, start=1):
        rel = CareRelationship.objects.create(
            doctor=row.doctor,
            patient=row.patient,
            role=row.role,
            valid_from=row.valid_from,
            valid_until=row.valid_until,
        )
        # The same action and shape as a grant made in the admin: what the DPO searches for.
        record(
            "access.grant",
            patient=row.patient,
            extra={
                "model": "records.carerelationship",
                "object_id": str(rel.pk),
                "object": str(rel)[:200],
                "change": "imported from CSV",
                "via": "csv import",
                "by": operator,
                "file_sha256": report.file_sha256,
                "line": row.line,
            },
        )
        report.created += 1
        if progress is not None:
            progress(done, len(rows))


def _relationship_item(row: RelationshipRow) -> dict[str, Any]:
    return {
        "line": row.line,
        "doctor": row.doctor.username,
        "patient_ipp": row.patient.ipp,
        "role": row.role,
        "valid_from": row.valid_from.isoformat(),
        "valid_until": row.valid_until.isoformat() if row.valid_until else None,
        "period": _period(row.valid_from, row.valid_until),
    }


def import_relationships(
    data: bytes, *, dry_run: bool = False, operator: str = "", progress: Progress | None = None
) -> ImportReport:
    """As `import_doctors`, for care relationships."""
    from vigie.audit.log import record

    return run_import(
        "relationships",
        data,
        validate=validate_relationships,
        describe=_relationship_item,
        create=lambda rows, report: _create_relationships(rows, report, operator, progress),
        record=record,
        dry_run=dry_run,
        operator=operator,
    )
