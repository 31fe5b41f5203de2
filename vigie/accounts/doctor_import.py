"""Bulk import of doctor accounts from a CSV file: `vigie doctors import FILE` (issue 9).

The file's shape (UTF-8, `;` or `,`, a header line) is read by `vigie.lib.csvtable`; the
check-everything-then-create-all run is `vigie.lib.csvimport.run_import`.

Doctors (one new account per line)::

    username;family_name;given_names;email;rpps
    dr.martin;MARTIN;Claire;claire.martin@example.org;10001234567

* `username` (identifiant): required, new (an existing account is an error, never updated);
  letters, digits and @ . + - _ ; stored lower-case.
* `family_name` (nom) and `given_names` (prénom, prénoms): required.
* `email` (courriel): optional, checked when given.
* `rpps` (numéro RPPS): optional, 11 digits (spaces allowed, and PSC's 12-digit form with
  its "8" prefix); unique among accounts. It is what a Pro Santé Connect sign-in is matched
  on (accounts/psc): a doctor without it can sign in only with a password and a code.

No password column: secrets do not belong in spreadsheets. Accounts are created active with
an unusable password and a one-time invitation each (valid 72 hours), whose code the command
prints once (never into the --report file); the operator hands each code over in person, and
the doctor uses it to choose a password and enrol an authenticator app (TOTP, QR code). The
auditor gets one alert for the new doctor accounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models.functions import Lower

from vigie.accounts.models import Role, User
from vigie.lib.csvimport import ImportReport, Progress, run_import
from vigie.lib.csvtable import LineError, Table, chunks, read_table, short

DOCTOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "username": ("username", "identifiant", "login", "utilisateur"),
    "family_name": ("family_name", "last_name", "nom", "nom_de_famille"),
    "given_names": ("given_names", "given_name", "first_name", "prenom", "prenoms"),
    "email": ("email", "e_mail", "mail", "courriel", "adresse_email"),
    "rpps": ("rpps", "numero_rpps", "no_rpps", "n_rpps"),
}
DOCTOR_REQUIRED = ("username", "family_name", "given_names")


@dataclass(frozen=True)
class DoctorRow:
    line: int
    username: str
    family_name: str
    given_names: str
    email: str
    rpps: str | None = None


_RPPS = re.compile(r"8?(\d{11})")
_username_validator = UnicodeUsernameValidator()
_NAME_MAX = 150


def validate_doctors(text: str) -> tuple[Table, list[DoctorRow]]:
    table = read_table(text, DOCTOR_COLUMNS, DOCTOR_REQUIRED)
    candidates: list[DoctorRow] = []
    seen: dict[str, int] = {}
    seen_rpps: dict[str, int] = {}
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
                    f"username “{short(username)}” may hold only letters, digits and @ . + - _"
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
                problems.append(f"email “{short(email)}” is not a valid address")
        rpps = None
        raw_rpps = "".join(values.get("rpps", "").split())
        if raw_rpps:
            found = _RPPS.fullmatch(raw_rpps)
            if found is None:
                problems.append(f"rpps “{short(raw_rpps)}” is not an RPPS number (11 digits)")
            elif found.group(1) in seen_rpps:
                problems.append(
                    f"rpps {found.group(1)} is already on line {seen_rpps[found.group(1)]}"
                )
            else:
                rpps = found.group(1)
        if not problems and username in seen:
            problems.append(f"username “{username}” is already on line {seen[username]}")
        if problems:
            table.errors.append(LineError(line, "; ".join(problems)))
            continue
        seen[username] = line
        if rpps is not None:
            seen_rpps[rpps] = line
        candidates.append(
            DoctorRow(line, username, values["family_name"], values["given_names"], email, rpps)
        )
    existing: set[str] = set()
    for batch in chunks(seen):
        existing.update(
            User.objects.annotate(key=Lower("username"))
            .filter(key__in=batch)
            .values_list("key", flat=True)
        )
    taken_rpps: set[str] = set()
    for batch in chunks(seen_rpps):
        taken_rpps.update(
            r for r in User.objects.filter(rpps__in=batch).values_list("rpps", flat=True) if r
        )
    good: list[DoctorRow] = []
    for row in candidates:
        if row.rpps is not None and row.rpps in taken_rpps:
            table.errors.append(
                LineError(row.line, f"rpps {row.rpps} already belongs to another account")
            )
        elif row.username in existing:
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
            rpps=row.rpps,
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
        "rpps": row.rpps or "",
    }


def import_doctors(
    data: bytes, *, dry_run: bool = False, operator: str = "", progress: Progress | None = None
) -> ImportReport:
    """Validate the doctors CSV `data` and, unless `dry_run` or any line is wrong, create
    every account in one transaction. Database and audit failures propagate (after the
    rollback: nothing is half-imported)."""
    from vigie.audit.log import record

    return run_import(
        "doctors",
        data,
        validate=validate_doctors,
        describe=_doctor_item,
        create=lambda rows, report: _create_doctors(rows, report, operator, progress),
        record=record,
        dry_run=dry_run,
        operator=operator,
    )
