"""Bulk import of doctors and care relationships from CSV files (issue 9).

`vigie doctors import FILE` and `vigie relationships import FILE` (both with `--dry-run` and
`--report FILE.json`) call `import_doctors` / `import_relationships` here.

The file
--------
UTF-8, with or without a byte-order mark (what Excel writes as "CSV UTF-8"). The delimiter is
`;` (French Excel) or `,`, whichever the header line uses more. The first non-empty line is a
header naming the columns, in any order; names are matched without regard to case, accents,
spaces or dashes, in English or French. Columns the import does not know are ignored (and
listed in the report). Empty lines, and lines whose every field is empty, are skipped.

Doctors (one new account per line)::

    username;family_name;given_names;email
    dr.martin;MARTIN;Claire;claire.martin@example.org

* `username` (identifiant): required, new (an existing account is an error, never updated);
  letters, digits and @ . + - _ ; stored lower-case.
* `family_name` (nom) and `given_names` (prénom, prénoms): required.
* `email` (courriel): optional, checked when given.
* An `rpps` column is accepted and ignored: the user model has no RPPS field yet.

No password column: secrets do not belong in spreadsheets. Accounts are created active with
an unusable password and a one-time invitation each (valid 72 hours), whose code the command
prints once (never into the --report file); the operator hands each code over in person, and
the doctor uses it to choose a password and enrol an authenticator app (TOTP, QR code). The
auditor gets one alert for the new doctor accounts.

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

What happens
------------
Every line is checked first and every error collected, with the file's physical line number
(the header is line 1) and a reason. If any line is wrong, nothing is imported. Otherwise
everything is created in one transaction, with one audit event per created account or
relationship (`account.created`, `access.grant`, as the admin writes for a grant) and one
summary event (`import.csv`) carrying the file's SHA-256: all commit together or not at all.
The validation is repeated inside that transaction, so what is written is what was checked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.records.identifiers import InvalidIdentifier, normalize_nir, validate_ipp
from vigie.records.models import CareRelationship, CareRole, Patient

if TYPE_CHECKING:
    from django.core.management.base import BaseCommand, CommandParser

Kind = Literal["doctors", "relationships"]
Progress = Callable[[int, int], None]

# A clinic's whole roster is a few thousand lines; anything far bigger is the wrong file.
MAX_FILE_BYTES = 20 * 1024 * 1024
# Keeps `IN (...)` lists under SQLite's bound-parameter limit on any version.
_CHUNK = 500

DOCTOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "username": ("username", "identifiant", "login", "utilisateur"),
    "family_name": ("family_name", "last_name", "nom", "nom_de_famille"),
    "given_names": ("given_names", "given_name", "first_name", "prenom", "prenoms"),
    "email": ("email", "e_mail", "mail", "courriel", "adresse_email"),
}
DOCTOR_REQUIRED = ("username", "family_name", "given_names")

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
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_EMPTY = {"", "-", "—"}


# --------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str


@dataclass(frozen=True)
class DoctorRow:
    line: int
    username: str
    family_name: str
    given_names: str
    email: str


@dataclass(frozen=True)
class RelationshipRow:
    line: int
    doctor: User
    patient: Patient
    role: str
    valid_from: datetime
    valid_until: datetime | None


@dataclass
class ImportReport:
    kind: Kind
    file_sha256: str
    dry_run: bool
    errors: list[LineError] = field(default_factory=list)
    good_lines: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    # One description per planned (dry run) or created item, in file order.
    items: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    # (username, one-time code, expiry) of each new account: printed once, never in as_json().
    invitations: list[tuple[str, str, datetime]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file_sha256": self.file_sha256,
            "dry_run": self.dry_run,
            "outcome": ("valid" if self.dry_run else "imported") if self.ok else "rejected",
            "good_lines": self.good_lines,
            "bad_lines": len({e.line for e in self.errors}),
            "created": self.created,
            "ignored_columns": self.ignored_columns,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
            "items": self.items,
        }


# --------------------------------------------------------------------------------------
# Reading the table (no database)


@dataclass
class Table:
    """The file's records: `rows` are (line, {field: value}) for well-formed lines only."""

    columns: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def _fold(text: str) -> str:
    """Lower-case, accents removed, blanks collapsed: for matching names, not for storing."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def _column_key(header: str) -> str:
    folded = _fold(header).replace("°", "")
    return re.sub(r"[^a-z0-9]+", "_", folded).strip("_")


def decode(data: bytes) -> str | LineError:
    """The file as text (BOM removed), or the line of its first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return LineError(
            line, "the file is not UTF-8 text (save it as “CSV UTF-8” from the spreadsheet)"
        )
    return text.removeprefix("\ufeff")


def sniff_delimiter(header_line: str) -> str:
    """`;` or `,`, whichever separates more fields of the header line (outside quotes)."""
    counts = {";": 0, ",": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return ";" if counts[";"] > counts[","] else ","


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | LineError]]:
    """(first physical line, fields or error) for each record of `text`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    consumed = 0
    while True:
        start = consumed + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            consumed = max(end, consumed + 1)
            if "unexpected end of data" in str(exc):
                yield start, LineError(start, "a quote opened here is never closed")
            else:
                yield start, LineError(start, f"not a well-formed CSV line ({exc})")
            continue
        end = reader.line_num
        consumed = end
        if end > start:
            # A quoted field spanning lines: legal CSV, but no field here holds a line break,
            # so it is almost always a stray quote swallowing the next lines.
            yield (
                start,
                LineError(
                    start,
                    f"a quoted field runs over lines {start} to {end} (unbalanced quote?)",
                ),
            )
            continue
        yield start, fields


def read_table(text: str, columns: dict[str, tuple[str, ...]], required: Sequence[str]) -> Table:
    """Parse `text` into named fields; never raises on any input."""
    table = Table()
    header: list[str] | None = None
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        table.errors.append(LineError(1, "the file is empty: a header line is expected"))
        return table
    delimiter = sniff_delimiter(first)
    for line, fields in _records(text, delimiter):
        if isinstance(fields, LineError):
            table.errors.append(fields)
            if header is None:
                return table  # without a header no other line can be read
            continue
        if header is None:
            if not any(f.strip() for f in fields):
                continue
            header = fields
            if not _read_header(table, header, line, columns, required):
                return table
            continue
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            table.errors.append(
                LineError(
                    line,
                    f"{len(fields)} field(s) where the header has {len(header)} "
                    f"(is the delimiter “{delimiter}” used inside a value without quotes?)",
                )
            )
            continue
        table.rows.append(
            (line, {name: fields[index].strip() for name, index in table.columns.items()})
        )
    if header is None:
        table.errors.append(LineError(1, "the file is empty: a header line is expected"))
    return table


def _read_header(
    table: Table,
    header: list[str],
    line: int,
    columns: dict[str, tuple[str, ...]],
    required: Sequence[str],
) -> bool:
    aliases = {alias: name for name, names in columns.items() for alias in names}
    for index, raw in enumerate(header):
        key = _column_key(raw)
        name = aliases.get(key)
        if name is None:
            if raw.strip():
                table.ignored_columns.append(raw.strip())
            continue
        if name in table.columns:
            table.errors.append(
                LineError(line, f"column “{raw.strip()}” appears twice (both mean {name})")
            )
            return False
        table.columns[name] = index
    missing = [name for name in required if name not in table.columns]
    if missing:
        expected = "; ".join(f"{n} (or {', '.join(columns[n][1:])})" for n in missing)
        table.errors.append(LineError(line, f"missing column(s): {expected}"))
        return False
    return True


# --------------------------------------------------------------------------------------
# Field parsers (no database)


def parse_date(value: str, *, end_of_day: bool = False) -> datetime:
    """An aware datetime (clinic time) from `YYYY-MM-DD`, `DD/MM/YYYY` or an ISO date-time.

    A date alone means the start of that day, or with `end_of_day` the start of the next
    (so "until 31/12" includes the 31st). Raises ValueError with a readable message.
    """
    text = value.strip()
    day: date | None = None
    french = _FRENCH_DATE.fullmatch(text)
    try:
        if french:
            day = date(int(french.group(3)), int(french.group(2)), int(french.group(1)))
        elif _ISO_DATE.fullmatch(text):
            day = date.fromisoformat(text)
        elif _ISO_DATE.match(text) and len(text) <= 32:
            moment = datetime.fromisoformat(text)
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment)
            return moment
    except (ValueError, OverflowError):
        raise ValueError(f"“{text}” is not a valid date") from None
    if day is None:
        raise ValueError(f"“{text}” is not a date (expected DD/MM/YYYY or YYYY-MM-DD)")
    if end_of_day:
        try:
            day += timedelta(days=1)
        except OverflowError:
            raise ValueError(f"“{text}” is too far in the future") from None
    return timezone.make_aware(datetime.combine(day, time.min))


def parse_role(value: str) -> str:
    folded = _fold(value)
    for role in CareRole:
        if folded == role.value:
            return role.value
    found = _ROLE_WORDS.get(folded)
    if found is None:
        known = ", ".join(r.value for r in CareRole)
        raise ValueError(f"unknown role “{value}” (expected {known}, or its French label)")
    return str(found)


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


# --------------------------------------------------------------------------------------
# Doctors


_username_validator = UnicodeUsernameValidator()
_NAME_MAX = 150


def validate_doctors(text: str) -> tuple[Table, list[DoctorRow]]:
    table = read_table(text, DOCTOR_COLUMNS, DOCTOR_REQUIRED)
    candidates: list[DoctorRow] = []
    seen: dict[str, int] = {}
    for line, values in table.rows:
        problems: list[str] = []
        username = User.normalize_username(values.get("username", ""))
        if not username:
            problems.append("username is empty")
        elif len(username) > _NAME_MAX:
            problems.append(f"username is longer than {_NAME_MAX} characters")
        else:
            try:
                _username_validator(username)
            except ValidationError:
                problems.append(
                    f"username “{_short(username)}” may hold only letters, digits and @ . + - _"
                )
        for name, label in (("family_name", "family name"), ("given_names", "given names")):
            if not values.get(name):
                problems.append(f"{label} is empty")
            elif len(values[name]) > _NAME_MAX:
                problems.append(f"{label} is longer than {_NAME_MAX} characters")
        email = values.get("email", "")
        if email:
            try:
                validate_email(email)
            except ValidationError:
                problems.append(f"email “{_short(email)}” is not a valid address")
        if not problems and username in seen:
            problems.append(f"username “{username}” is already on line {seen[username]}")
        if problems:
            table.errors.append(LineError(line, "; ".join(problems)))
            continue
        seen[username] = line
        candidates.append(
            DoctorRow(line, username, values["family_name"], values["given_names"], email)
        )
    existing: set[str] = set()
    for batch in _chunks(seen):
        existing.update(
            User.objects.annotate(key=Lower("username"))
            .filter(key__in=batch)
            .values_list("key", flat=True)
        )
    good: list[DoctorRow] = []
    for row in candidates:
        if row.username in existing:
            table.errors.append(
                LineError(
                    row.line,
                    f"an account “{row.username}” already exists (the import never changes "
                    "an account: edit it in the admin)",
                )
            )
        else:
            good.append(row)
    table.errors.sort(key=lambda e: e.line)
    return table, good


def _create_doctors(
    rows: list[DoctorRow], report: ImportReport, operator: str, progress: Progress | None
) -> None:
    from vigie.accounts import invitations
    from vigie.audit.log import record

    for done, row in enumerate(rows, start=1):
        user = User.objects.create_user(
            username=row.username,
            email=row.email,
            password=None,  # unusable: the doctor sets it with the invitation
            first_name=row.given_names,
            last_name=row.family_name,
            role=Role.DOCTOR,
        )
        record(
            "account.created",
            extra={
                "model": "accounts.user",
                "object_id": str(user.pk),
                "username": user.username,
                "role": Role.DOCTOR.value,
                "via": "csv import",
                "by": operator,
                "file_sha256": report.file_sha256,
                "line": row.line,
            },
        )
        issued = invitations.issue(user, by=operator)
        report.invitations.append((user.username, issued.code, issued.invitation.expires_at))
        report.created += 1
        if progress is not None:
            progress(done, len(rows))
    if rows:
        invitations.doctors_created([r.username for r in rows], by=operator)


def _doctor_item(row: DoctorRow) -> dict[str, Any]:
    return {
        "line": row.line,
        "username": row.username,
        "family_name": row.family_name,
        "given_names": row.given_names,
        "email": row.email,
    }


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
    for batch in _chunks(u for u in usernames if u):
        for user in User.objects.annotate(key=Lower("username")).filter(key__in=batch):
            doctors[user.username.lower()] = user
    ipps = {v.get("patient_ipp", "") for _, v in table.rows} - {""}
    by_ipp: dict[str, Patient] = {}
    for batch in _chunks(ipps):
        by_ipp.update({p.ipp: p for p in Patient.objects.filter(ipp__in=batch)})
    inses = {normalize_nir(v.get("patient_ins", "")) for _, v in table.rows} - {""}
    by_ins: dict[str, Patient] = {}
    for batch in _chunks(inses):
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
        if raw_from in _EMPTY:
            problems.append("valid_from is empty")
        else:
            try:
                start = parse_date(raw_from)
            except ValueError as exc:
                problems.append(f"valid_from: {exc}")
        if raw_until not in _EMPTY:
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
        problems.append(f"unknown doctor “{_short(username)}” (no account with that username)")
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
                problems.append(f"unknown patient IPP “{_short(ipp)}”")
            except InvalidIdentifier as exc:
                problems.append(f"patient IPP “{_short(ipp)}”: {exc}")
            return None
    if ins:
        other = by_ins.get(ins)
        if other is None:
            problems.append(f"unknown patient INS “{_short(ins)}”")
            return None
        if found is not None and found.pk != other.pk:
            problems.append(f"IPP “{ipp}” and INS “{ins}” are two different patients")
            return None
        found = other
    return found


def _without_duplicates(rows: list[RelationshipRow], table: Table) -> list[RelationshipRow]:
    pairs = {(r.doctor.pk, r.patient.pk) for r in rows}
    existing: dict[tuple[int, int], list[CareRelationship]] = defaultdict(list)
    for batch in _chunks(sorted({d for d, _ in pairs})):
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


# --------------------------------------------------------------------------------------
# Entry points


def _run(
    kind: Kind,
    data: bytes,
    *,
    dry_run: bool,
    operator: str,
    progress: Progress | None,
) -> ImportReport:
    from vigie.audit.log import record

    report = ImportReport(kind=kind, file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run)
    text = decode(data)
    if isinstance(text, LineError):
        report.errors.append(text)
        return report

    def check() -> list[Any]:
        if kind == "doctors":
            table, doctor_rows = validate_doctors(text)
            rows: list[Any] = doctor_rows
        else:
            table, relationship_rows = validate_relationships(text)
            rows = relationship_rows
        report.errors = table.errors
        report.ignored_columns = table.ignored_columns
        report.good_lines = len(rows)
        report.items = [
            _doctor_item(r) if kind == "doctors" else _relationship_item(r) for r in rows
        ]
        return rows

    if dry_run:
        check()
        return report
    with transaction.atomic():
        # Checked again inside the transaction that writes (on SQLite it holds the write
        # lock), so nothing granted meanwhile can slip between the check and the insert.
        rows = check()
        if report.errors:
            return report
        if kind == "doctors":
            _create_doctors(rows, report, operator, progress)
        else:
            _create_relationships(rows, report, operator, progress)
        if not report.created:
            return report
        record(
            "import.csv",
            extra={
                "kind": kind,
                "file_sha256": report.file_sha256,
                "created": report.created,
                "by": operator,
            },
        )
    return report


def import_doctors(
    data: bytes, *, dry_run: bool = False, operator: str = "", progress: Progress | None = None
) -> ImportReport:
    """Validate the doctors CSV `data` and, unless `dry_run` or any line is wrong, create
    every account in one transaction. Database and audit failures propagate (after the
    rollback: nothing is half-imported)."""
    return _run("doctors", data, dry_run=dry_run, operator=operator, progress=progress)


def import_relationships(
    data: bytes, *, dry_run: bool = False, operator: str = "", progress: Progress | None = None
) -> ImportReport:
    """As `import_doctors`, for care relationships."""
    return _run("relationships", data, dry_run=dry_run, operator=operator, progress=progress)


# --------------------------------------------------------------------------------------
# The report, as the commands print it (English, like every CLI output)

FIRST_LOGIN = (
    "The new accounts have no password (none is ever taken from a spreadsheet, and no "
    "administrator ever chooses one). Hand each doctor their invitation code below in person "
    "(it is shown only now and is valid 72 hours); at /accounts/invitation/ the doctor chooses "
    "a password, then enrols an authenticator app (QR code) and receives ten recovery codes. "
    "A lost or expired code: reset the account in the admin (Users → select → “Reset "
    "credentials”), which issues a new one."
)


def report_lines(report: ImportReport) -> list[str]:
    """The human report: every bad line with its reason, then what was (or would be) done."""
    noun = "account" if report.kind == "doctors" else "care relationship"
    lines: list[str] = []
    if report.ignored_columns:
        lines.append(f"ignored column(s): {', '.join(report.ignored_columns)}")
    if report.errors:
        lines.extend(f"line {e.line}: {e.reason}" for e in report.errors)
        bad = len({e.line for e in report.errors})
        lines.append(
            f"{bad} bad line(s), {report.good_lines} good line(s): nothing was imported "
            "(fix the bad lines and run the import again)"
        )
        return lines
    if report.dry_run:
        for item in report.items:
            lines.append(_describe(report.kind, item, "would create"))
        lines.append(
            f"dry run: {report.good_lines} {noun}(s) would be created; nothing was changed"
        )
        return lines
    for item in report.items:
        lines.append(_describe(report.kind, item, "created"))
    lines.append(f"{report.created} {noun}(s) created (file SHA-256 {report.file_sha256})")
    if report.kind == "doctors" and report.created:
        lines.append(FIRST_LOGIN)
        for username, code, expires_at in report.invitations:
            lines.append(
                f"invitation for {username}: {code} (valid until {expires_at:%Y-%m-%d %H:%M} UTC)"
            )
    return lines


def _describe(kind: Kind, item: dict[str, Any], verb: str) -> str:
    if kind == "doctors":
        email = f" <{item['email']}>" if item["email"] else ""
        return (
            f"line {item['line']}: {verb} {item['username']} "
            f"({item['family_name'].upper()} {item['given_names']}{email})"
        )
    return (
        f"line {item['line']}: {verb} {item['doctor']} → {item['patient_ipp']} "
        f"({item['role']}) {item['period']}"
    )


# --------------------------------------------------------------------------------------
# The two commands' shared body


def _operator() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "cli"


EXIT_CODES = """\
exit codes: 0 imported (with --dry-run: every line is valid), 1 some lines are wrong and
nothing was imported, 2 the import could not run (unreadable file, database or audit log
unavailable) and nothing was imported."""


def add_import_parser(parser: CommandParser, description: str, summary: str) -> None:
    """The `import FILE [--dry-run] [--report FILE]` subcommand, with its help unwrapped."""
    import argparse

    from django.core.management.base import DjangoHelpFormatter

    class Formatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    parser.formatter_class = Formatter
    parser.description = description
    parser.epilog = EXIT_CODES
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser(
        "import",
        help=summary,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=Formatter,
    )
    imp.add_argument("file", help="the CSV file (UTF-8)")
    imp.add_argument(
        "--dry-run", action="store_true", help="check every line and report; change nothing"
    )
    imp.add_argument("--report", metavar="REPORT.json", help="also write the report as JSON")


def run_import_command(command: BaseCommand, kind: Kind, options: dict[str, Any]) -> None:
    """`vigie doctors|relationships import FILE [--dry-run] [--report FILE]`."""
    import json
    from pathlib import Path

    from django.core.management.base import CommandError
    from django.db import DatabaseError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from vigie.audit.log import AuditUnavailable

    path = Path(options["file"])
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", returncode=2) from None
    if len(data) > MAX_FILE_BYTES:
        raise CommandError(
            f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB: not an import file",
            returncode=2,
        )
    runner = import_doctors if kind == "doctors" else import_relationships
    label = "Creating accounts" if kind == "doctors" else "Creating care relationships"
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    try:
        with bar:
            report = runner(
                data, dry_run=options["dry_run"], operator=_operator(), progress=advance
            )
    except (DatabaseError, AuditUnavailable) as exc:
        raise CommandError(
            f"the import failed and was rolled back, nothing was imported: {exc}", returncode=2
        ) from None
    for line in report_lines(report):
        command.stdout.write(line)
    if options.get("report"):
        target = Path(options["report"])
        body = dict(report.as_json(), file=str(path))
        try:
            target.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", "utf-8")
        except OSError as exc:
            raise CommandError(
                f"cannot write the report {target}: {exc.strerror or exc}", returncode=2
            ) from None
    if report.errors:
        bad = len({e.line for e in report.errors})
        raise CommandError(f"{bad} bad line(s) in {path}: nothing was imported", returncode=1)
