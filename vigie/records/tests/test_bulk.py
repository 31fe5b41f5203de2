"""Bulk CSV import of doctors and care relationships (issue 9): all or nothing, every bad line
reported with its line number."""

from __future__ import annotations

import contextlib
import json
from datetime import date, datetime
from io import StringIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from hypothesis import given, settings
from hypothesis import strategies as st

from vigie.accounts import doctor_import
from vigie.accounts.models import Role, User
from vigie.audit.models import AuditEvent
from vigie.lib import csvtable
from vigie.records import relationship_import
from vigie.records.models import CareRelationship, Patient
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
HEADER = "doctor;patient_ipp;role;valid_from;valid_until"


@pytest.fixture(autouse=True)
def _audit_on_calling_thread(settings: Any) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False


def _doctors(count: int, prefix: str = "dr.bulk") -> list[User]:
    User.objects.bulk_create(
        User(
            username=f"{prefix}{i:04d}",
            role=Role.DOCTOR,
            first_name="Claire",
            last_name=f"MEDECIN{i}",
            password=make_password(None),
        )
        for i in range(count)
    )
    return list(User.objects.filter(username__startswith=prefix).order_by("username"))


def _patients(count: int, prefix: str = "BULK") -> list[Patient]:
    Patient.objects.bulk_create(
        Patient(
            ipp=f"{prefix}{i:06d}",
            family_name=f"PATIENT{i}",
            given_names="Jean",
            birth_date=date(1970, 1, 1),
        )
        for i in range(count)
    )
    return list(Patient.objects.filter(ipp__startswith=prefix).order_by("ipp"))


def _run(tmp_path: Path, command: str, content: str | bytes, *args: str) -> tuple[int, str, Path]:
    path = tmp_path / "import.csv"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    out = StringIO()
    code = 0
    try:
        call_command(command, "import", str(path), *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        code = exc.returncode
        out.write(f"\n{exc}")
    return code, out.getvalue(), path


def _grants() -> int:
    return AuditEvent.objects.filter(action="access.grant").count()


# --------------------------------------------------------------------------------------
# The acceptance test: 1,000 relationships and 10 bad lines


def _acceptance_file() -> tuple[list[str], dict[int, str], int]:
    """1,000 good lines with 10 bad ones of different kinds scattered among them.

    Returns (data lines without the header, {physical line: expected reason fragment},
    index in data lines of each bad line is implied by the dict)."""
    doctors = _doctors(1000)
    patients = _patients(1000)
    admin = User.objects.create_user(username="it.someone", role=Role.ADMIN)
    existing_doctor, existing_patient = _doctors(1, "dr.existing")[0], _patients(1, "EXIST")[0]
    CareRelationship.objects.create(
        doctor=existing_doctor,
        patient=existing_patient,
        role="treating",
        valid_from=datetime(2026, 1, 1, tzinfo=PARIS),
    )
    good = [
        f"{d.username};{p.ipp};{('treating', 'referring', 'consulting')[i % 3]};"
        f"{'01/01/2027' if i % 2 else '2027-01-01'};{'' if i % 4 else '31/12/2027'}"
        for i, (d, p) in enumerate(zip(doctors, patients, strict=True))
    ]
    bad = [
        (37, "dr.nobody;BULK000001;treating;01/01/2027;", "unknown doctor"),
        (150, "dr.bulk0002;NOPE000;treating;01/01/2027;", "unknown patient IPP"),
        (260, "dr.bulk0003;BULK000003;treating;31/02/2027;", "valid_from"),
        (399, "dr.bulk0004;BULK000004;treating;01/06/2027;01/01/2027", "before valid_from"),
        (480, "dr.bulk0005;BULK000005;surgeon;01/01/2027;", "unknown role"),
        # Same pair as good line for index 6, whose period overlaps.
        (555, "dr.bulk0006;BULK000006;consulting;15/03/2027;", "duplicate of line 8"),
        (
            640,
            f"{existing_doctor.username};{existing_patient.ipp};treating;01/01/2027;",
            "already has a relationship",
        ),
        (777, ";BULK000007;treating;01/01/2027;", "doctor is empty"),
        (888, "dr.bulk0008;BULK000008;treating;01/01/2027", "4 field(s) where the header has 5"),
        (999, f"{admin.username};BULK000009;treating;01/01/2027;", "is not a doctor"),
    ]
    lines = list(good)
    for position, text, _reason in bad:
        lines.insert(position, text)
    expected = {lines.index(text) + 2: reason for _pos, text, reason in bad}
    assert len(expected) == 10
    return lines, expected, len(good)


def test_acceptance_ten_bad_lines_are_reported_and_nothing_is_imported(tmp_path: Path) -> None:
    lines, expected, _ = _acceptance_file()
    before = CareRelationship.objects.count()

    report = tmp_path / "report.json"
    code, out, _ = _run(
        tmp_path, "relationships", "\n".join([HEADER, *lines]) + "\n", "--report", str(report)
    )

    assert code == 1
    reported = {
        int(line.split(":")[0].removeprefix("line ")): line
        for line in out.splitlines()
        if line.startswith("line ")
    }
    assert set(reported) == set(expected), out
    for number, reason in expected.items():
        assert reason in reported[number], (number, reported[number])
    assert "10 bad line(s), 1000 good line(s): nothing was imported" in out
    body = json.loads(report.read_text("utf-8"))
    assert body["outcome"] == "rejected"
    assert sorted(e["line"] for e in body["errors"]) == sorted(expected)
    assert CareRelationship.objects.count() == before
    assert _grants() == 0
    assert not AuditEvent.objects.filter(action="import.csv").exists()

    # The same file without the bad lines: the 1,000 are created, each grant audited.
    bad_lines = set(expected)
    clean = [text for i, text in enumerate(lines, start=2) if i not in bad_lines]
    code, out, _ = _run(tmp_path, "relationships", "\n".join([HEADER, *clean]) + "\n")
    assert code == 0, out
    assert "1000 care relationship(s) created" in out
    assert CareRelationship.objects.count() == before + 1000
    assert _grants() == 1000
    summary = AuditEvent.objects.get(action="import.csv")
    assert summary.extra["created"] == 1000
    assert summary.extra["kind"] == "relationships"


def test_the_json_report_lists_every_bad_line(tmp_path: Path) -> None:
    doctor, patient = _doctors(1)[0], _patients(1)[0]
    report = tmp_path / "report.json"
    content = f"{HEADER}\n{doctor.username};{patient.ipp};treating;01/01/2027;\nx;y;z;w;v\n"
    code, _out, _ = _run(tmp_path, "relationships", content, "--report", str(report))
    assert code == 1
    body = json.loads(report.read_text("utf-8"))
    assert body["outcome"] == "rejected"
    assert body["good_lines"] == 1
    assert [e["line"] for e in body["errors"]] == [3]
    assert "unknown doctor" in body["errors"][0]["reason"]
    assert "unknown patient IPP" in body["errors"][0]["reason"]
    assert "unknown role" in body["errors"][0]["reason"]


def test_a_database_failure_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctors, patients = _doctors(600), _patients(600)
    content = "\n".join(
        [HEADER]
        + [
            f"{d.username};{p.ipp};treating;01/01/2027;"
            for d, p in zip(doctors, patients, strict=True)
        ]
    )
    real_save = CareRelationship.save
    calls = {"n": 0}

    def failing_save(self: CareRelationship, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 500:
            raise DatabaseError("disk I/O error")
        real_save(self, *args, **kwargs)

    monkeypatch.setattr(CareRelationship, "save", failing_save)
    code, out, _ = _run(tmp_path, "relationships", content)

    assert code == 2
    assert "rolled back, nothing was imported" in out
    assert calls["n"] == 500
    assert CareRelationship.objects.count() == 0
    assert _grants() == 0


def _pairs_file(count: int) -> str:
    doctors, patients = _doctors(count), _patients(count)
    return "\n".join(
        [HEADER]
        + [
            f"{d.username};{p.ipp};treating;01/01/2027;"
            for d, p in zip(doctors, patients, strict=True)
        ]
    )


@pytest.mark.usefixtures("audit_committing")
def test_with_real_commits_a_failure_midway_or_at_commit_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not inside the test's own transaction: the import's transaction really begins, fails
    # and rolls back (or really commits, at the end).
    content = _pairs_file(30)
    real_save = CareRelationship.save
    calls = {"n": 0}

    def failing_save(self: CareRelationship, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 15:
            raise DatabaseError("disk I/O error")
        real_save(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(CareRelationship, "save", failing_save)
        assert _run(tmp_path, "relationships", content)[0] == 2
    assert CareRelationship.objects.count() == 0
    assert _grants() == 0

    def failing_commit() -> None:
        raise DatabaseError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(connection, "commit", failing_commit)
        assert _run(tmp_path, "relationships", content)[0] == 2
    connection.close()  # a fresh connection: the failed one is in an unknown state
    assert CareRelationship.objects.count() == 0
    assert _grants() == 0

    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 0, out
    assert CareRelationship.objects.count() == 30
    assert _grants() == 30


def test_an_audit_failure_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigie.audit import log

    doctors, patients = _doctors(20), _patients(20)
    content = "\n".join(
        [HEADER]
        + [
            f"{d.username};{p.ipp};treating;01/01/2027;"
            for d, p in zip(doctors, patients, strict=True)
        ]
    )
    real_record = log.record
    calls = {"n": 0}

    def failing_record(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 10:
            raise log.AuditUnavailable("audit log unavailable: locked")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(log, "record", failing_record)
    code, _out, _ = _run(tmp_path, "relationships", content)
    assert code == 2
    assert CareRelationship.objects.count() == 0
    assert _grants() == 0


def test_dry_run_creates_nothing(tmp_path: Path) -> None:
    doctors, patients = _doctors(3), _patients(3)
    content = "\n".join(
        [HEADER]
        + [
            f"{d.username};{p.ipp};treating;01/01/2027;"
            for d, p in zip(doctors, patients, strict=True)
        ]
    )
    code, out, _ = _run(tmp_path, "relationships", content, "--dry-run")
    assert code == 0
    assert "dry run: 3 care relationship(s) would be created; nothing was changed" in out
    assert "line 2: would create dr.bulk0000 → BULK000000 (treating)" in out
    assert CareRelationship.objects.count() == 0
    assert AuditEvent.objects.count() == 0

    code, out, _ = _run(
        tmp_path, "relationships", content + "\nnobody;X;treating;01/01/2027;", "--dry-run"
    )
    assert code == 1
    assert "line 5: unknown doctor" in out


def test_comma_delimiter_bom_crlf_french_headers_and_labels(tmp_path: Path) -> None:
    doctor, patient = _doctors(1)[0], make_patient()
    assert patient.ins
    content = (
        "\ufeffMédecin,IPP,INS,Rôle,Début,Fin\r\n"
        f"{doctor.username.upper()},{patient.ipp},{patient.ins},Médecin traitant,05/01/2027,"
        "31/12/2027\r\n"
    )
    code, out, _ = _run(tmp_path, "relationships", content.encode("utf-8"))
    assert code == 0, out
    rel = CareRelationship.objects.get()
    assert rel.doctor == doctor
    assert rel.patient == patient
    assert rel.role == "treating"
    assert rel.valid_from == datetime(2027, 1, 5, tzinfo=PARIS)
    # A date-only end is inclusive: the access lasts through 31 December.
    assert rel.valid_until == datetime(2028, 1, 1, tzinfo=PARIS)
    assert rel.is_active(datetime(2027, 12, 31, 23, 0, tzinfo=PARIS))


def test_semicolon_delimiter_with_quoted_fields_and_ins_only(tmp_path: Path) -> None:
    doctor, patient = _doctors(1)[0], make_patient()
    content = (
        "doctor;patient_ins;role;valid_from;valid_until\n"
        f'"{doctor.username}";"{patient.ins}";"Spécialiste consultant";2027-01-01;\n'
    )
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 0, out
    rel = CareRelationship.objects.get()
    assert (rel.patient, rel.role, rel.valid_until) == (patient, "consulting", None)


def test_ipp_and_ins_of_two_different_patients_are_refused(tmp_path: Path) -> None:
    doctor, first, second = _doctors(1)[0], make_patient(), make_patient()
    content = (
        "doctor;ipp;ins;role;valid_from\n"
        f"{doctor.username};{first.ipp};{second.ins};treating;01/01/2027\n"
    )
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 1
    assert "line 2: IPP" in out
    assert "two different patients" in out


def test_non_overlapping_periods_of_the_same_pair_are_both_imported(tmp_path: Path) -> None:
    doctor, patient = _doctors(1)[0], _patients(1)[0]
    content = (
        f"{HEADER}\n"
        f"{doctor.username};{patient.ipp};treating;01/01/2027;30/06/2027\n"
        f"{doctor.username};{patient.ipp};treating;01/07/2027;\n"
    )
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 0, out
    assert CareRelationship.objects.count() == 2


def test_running_the_same_file_twice_grants_nothing_twice(tmp_path: Path) -> None:
    doctor, patient = _doctors(1)[0], _patients(1)[0]
    content = f"{HEADER}\n{doctor.username};{patient.ipp};treating;01/01/2027;\n"
    assert _run(tmp_path, "relationships", content)[0] == 0
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 1
    assert "line 2: duplicate" in out
    assert CareRelationship.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("", 1, "the file is empty"),
        ("doctor;role;valid_from\n", 1, "patient_ipp"),
        ("doctor;ipp;valid_from\n", 1, "missing column(s): role"),
        ("doctor;ipp;ipp;role;valid_from\n", 1, "appears twice"),
        (f'{HEADER}\n"dr.x;IPP1;treating;01/01/2027;\nmore;lines\n', 2, "never closed"),
        (f'{HEADER}\ndr.x;"IPP1\nX";treating;01/01/2027;\n', 2, "runs over lines 2 to 3"),
    ],
)
def test_malformed_files_are_reported(tmp_path: Path, content: str, line: int, reason: str) -> None:
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 1
    assert f"line {line}: " in out
    assert reason in out


def test_a_file_that_is_not_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    content = f"{HEADER}\ndr.x;IPP1;traitant;01/01/2027;\n".encode() + "dr.é;IPP2".encode("latin-1")
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 1
    assert "line 3: the file is not UTF-8" in out


def test_a_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read") as caught:
        call_command("relationships", "import", str(tmp_path / "absent.csv"))
    assert caught.value.returncode == 2


def test_blank_and_empty_lines_are_skipped_and_numbering_stays_physical(tmp_path: Path) -> None:
    doctor, patient = _doctors(1)[0], _patients(1)[0]
    content = f"\n{HEADER}\n;;;;\n\n{doctor.username};{patient.ipp};treating;01/01/2027;\nbad\n"
    code, out, _ = _run(tmp_path, "relationships", content)
    assert code == 1
    assert "line 6: 1 field(s) where the header has 5" in out
    assert "1 bad line(s), 1 good line(s)" in out


# --------------------------------------------------------------------------------------
# Doctors


DOCTORS_HEADER = "username;family_name;given_names;email;rpps"


def test_doctors_are_created_without_password_and_audited(tmp_path: Path) -> None:
    content = (
        f"{DOCTORS_HEADER}\n"
        "Dr.Martin;MARTIN;Claire;claire.martin@example.org;10001234567\n"
        "dr.bernard;BERNARD;Paul Henri;;\n"
    )
    code, out, _ = _run(tmp_path, "doctors", content)
    assert code == 0, out
    assert "ignored column" not in out
    assert "2 account(s) created" in out
    assert "Hand each doctor their invitation code" in out
    martin = User.objects.get(username="dr.martin")
    assert (martin.role, martin.last_name, martin.first_name) == (Role.DOCTOR, "MARTIN", "Claire")
    assert martin.email == "claire.martin@example.org"
    assert not martin.has_usable_password()
    assert martin.is_active
    # The RPPS number is what a Pro Santé Connect sign-in is matched on; none is "no number".
    assert martin.rpps == "10001234567"
    assert User.objects.get(username="dr.bernard").rpps is None
    events = AuditEvent.objects.filter(action="account.created").order_by("seq")
    assert [e.extra["username"] for e in events] == ["dr.martin", "dr.bernard"]
    assert AuditEvent.objects.get(action="import.csv").extra["created"] == 2


def test_the_import_issues_invitations_printed_once_and_never_in_the_report(
    tmp_path: Path,
) -> None:
    import re

    from vigie.accounts import invitations
    from vigie.alerts.models import Alert

    report = tmp_path / "report.json"
    content = f"{DOCTORS_HEADER}\ndr.martin;MARTIN;Claire;;\ndr.bernard;BERNARD;Paul;;\n"
    code, out, _ = _run(tmp_path, "doctors", content, "--report", str(report))
    assert code == 0, out
    codes = dict(re.findall(r"invitation for (\S+): ([A-Z2-7-]{24})", out))
    assert set(codes) == {"dr.martin", "dr.bernard"}
    assert not any(c in report.read_text(encoding="utf-8") for c in codes.values())
    # Each code opens its own account only, and nobody chose the password but the doctor.
    assert invitations.find("dr.martin", codes["dr.martin"]).user.username == "dr.martin"
    with pytest.raises(invitations.InvitationError):
        invitations.find("dr.martin", codes["dr.bernard"])
    alert = Alert.objects.get(kind="account.role_changed")
    assert alert.details["users"] == ["dr.martin", "dr.bernard"]


def test_doctor_lines_with_errors_import_nothing(tmp_path: Path) -> None:
    User.objects.create_user(username="dr.exists", role=Role.DOCTOR)
    content = (
        "identifiant;nom;prénom;courriel\n"  # French headers
        "dr.ok;OK;Anne;\n"
        "DR.EXISTS;EXISTS;Bob;\n"
        "dr.ok;TWICE;Anne;\n"
        "dr bad;BAD;Carl;\n"
        "dr.noname;;Dan;\n"
        "dr.mail;MAIL;Eve;not-an-address\n"
        "dr.short;SHORT\n"
    )
    code, out, _ = _run(tmp_path, "doctors", content)
    assert code == 1
    assert "line 3: an account “dr.exists” already exists" in out
    assert "line 4: username “dr.ok” is already on line 2" in out
    assert "line 5: username “dr bad” may hold only" in out
    assert "line 6: family name is empty" in out
    assert "line 7: email “not-an-address” is not a valid address" in out
    assert "line 8: 2 field(s) where the header has 4" in out
    assert "6 bad line(s), 1 good line(s)" in out
    assert list(User.objects.values_list("username", flat=True)) == ["dr.exists"]
    assert not AuditEvent.objects.filter(action="account.created").exists()


def test_doctor_rpps_numbers_are_checked_and_unique(tmp_path: Path) -> None:
    User.objects.create_user(username="dr.exists", role=Role.DOCTOR, rpps="10000000001")
    content = (
        f"{DOCTORS_HEADER}\n"
        "dr.a;A;Anne;;1000 0000 002\n"  # spaces as printed on a card: accepted
        "dr.b;B;Bob;;810000000003\n"  # PSC's form, with its "8" prefix: accepted
        "dr.c;C;Carl;;10000000002\n"
        "dr.d;D;Dan;;10000000001\n"
        "dr.e;E;Eve;;12345\n"
    )
    code, out, _ = _run(tmp_path, "doctors", content)
    assert code == 1
    assert "line 4: rpps 10000000002 is already on line 2" in out
    assert "line 5: rpps 10000000001 already belongs to another account" in out
    assert "line 6: rpps “12345” is not an RPPS number (11 digits)" in out
    assert "3 bad line(s), 2 good line(s)" in out
    good = f"{DOCTORS_HEADER}\ndr.a;A;Anne;;1000 0000 002\ndr.b;B;Bob;;810000000003\n"
    assert _run(tmp_path, "doctors", good)[0] == 0
    assert dict(
        User.objects.filter(username__in=["dr.a", "dr.b"]).values_list("username", "rpps")
    ) == {
        "dr.a": "10000000002",
        "dr.b": "10000000003",
    }


def test_doctors_dry_run_and_then_relationships_for_them(tmp_path: Path) -> None:
    content = "username,family_name,given_names\ndr.new,NEW,Nina\n"
    code, out, _ = _run(tmp_path, "doctors", content, "--dry-run")
    assert code == 0
    assert "line 2: would create dr.new (NEW Nina)" in out
    assert not User.objects.exists()
    assert _run(tmp_path, "doctors", content)[0] == 0
    patient = _patients(1)[0]
    code, out, _ = _run(
        tmp_path, "relationships", f"{HEADER}\ndr.new;{patient.ipp};traitant;01/01/2027;\n"
    )
    assert code == 0, out


def test_a_doctor_insert_failure_midway_leaves_no_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = DOCTORS_HEADER + "\n" + "".join(f"dr.n{i};N;Nina;;\n" for i in range(50))
    real_save = User.save
    calls = {"n": 0}

    def failing_save(self: User, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 25:
            raise DatabaseError("connection lost")
        real_save(self, *args, **kwargs)

    monkeypatch.setattr(User, "save", failing_save)
    code, _out, _ = _run(tmp_path, "doctors", content)
    assert code == 2
    assert not User.objects.exists()
    assert not AuditEvent.objects.exists()


# --------------------------------------------------------------------------------------
# Parsers: any input gives line errors, never an exception


def test_dates_in_both_formats() -> None:
    assert csvtable.parse_date("2027-03-04") == datetime(2027, 3, 4, tzinfo=PARIS)
    assert csvtable.parse_date("4/3/2027") == datetime(2027, 3, 4, tzinfo=PARIS)
    assert csvtable.parse_date("04/03/2027", end_of_day=True) == datetime(2027, 3, 5, tzinfo=PARIS)
    assert csvtable.parse_date("2027-03-04T08:30") == datetime(2027, 3, 4, 8, 30, tzinfo=PARIS)
    for bad in ("31/02/2027", "2027-13-01", "03-04-2027", "demain", "31/12/9999x"):
        with pytest.raises(ValueError, match="date"):
            csvtable.parse_date(bad)
    with pytest.raises(ValueError, match="too far"):
        csvtable.parse_date("31/12/9999", end_of_day=True)


def test_roles_by_value_and_label() -> None:
    assert relationship_import.parse_role("Treating") == "treating"
    assert relationship_import.parse_role("  médecin   ADRESSEUR ") == "referring"
    assert relationship_import.parse_role("specialiste consultant") == "consulting"
    with pytest.raises(ValueError, match="unknown role"):
        relationship_import.parse_role("chirurgien")


def test_delimiter_sniffing() -> None:
    assert csvtable.sniff_delimiter("a;b;c") == ";"
    assert csvtable.sniff_delimiter("a,b,c") == ","
    assert csvtable.sniff_delimiter('"nom, prénom";ipp') == ";"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_rows_or_line_errors(text: str) -> None:
    table = csvtable.read_table(
        text, relationship_import.RELATIONSHIP_COLUMNS, relationship_import.RELATIONSHIP_REQUIRED
    )
    physical = max(1, len(text.splitlines()) + 1)
    for error in table.errors:
        assert 1 <= error.line <= physical + text.count("\r")
        assert error.reason


def test_a_value_holding_a_nul_byte_is_refused_on_its_line() -> None:
    # Found by the property below on PostgreSQL, which refuses NUL in any text: the lookup
    # of the IPP failed the whole validation with a DataError instead of naming the line.
    text = "\n".join([HEADER, "IPP\x00001;x;y", "IPP2;a\x07;b"])
    table, good = relationship_import.validate_relationships(text)
    assert not good
    assert [(e.line, "control character" in e.reason) for e in table.errors] == [
        (2, True),
        (3, True),
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12), max_size=7
        ),
        max_size=6,
    ),
    st.sampled_from([";", ","]),
)
def test_any_rows_after_a_valid_header_never_raise(rows: list[list[str]], delimiter: str) -> None:
    text = "\n".join([HEADER.replace(";", delimiter), *(delimiter.join(r) for r in rows)])
    table, good = relationship_import.validate_relationships(text)
    assert not good  # nobody in the database
    for error in table.errors:
        assert error.line >= 2
        assert error.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_report_not_an_exception(data: bytes) -> None:
    report = doctor_import.import_doctors(data, dry_run=True)
    assert report.errors or report.good_lines >= 0
    assert User.objects.count() == 0


@given(st.text(max_size=40))
def test_parse_date_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        csvtable.parse_date(text, end_of_day=True)
