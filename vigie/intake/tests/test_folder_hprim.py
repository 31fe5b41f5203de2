"""HPRIM Santé files through the hot folder: every corpus file ends stored (for its patient
or for reconciliation, one document per patient holding that patient's bytes as received) or
in quarantine with the line to fix; a failure midway stores nothing and leaves the file.

Real files in a real directory, the real parser, `receive()`, vault and database.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from vigie import vault
from vigie.audit import log as audit_log
from vigie.audit.log import AuditUnavailable, record
from vigie.audit.models import AuditEvent
from vigie.intake import folder_hprim
from vigie.intake.folder import HotFolder, Outcome
from vigie.intake.hprim import channel, parse, patient_bytes
from vigie.intake.hprim.channel import CONTENT_TYPE
from vigie.intake.hprim.testing import CORPUS, TODAY, Report, cases, hprim, make_nir
from vigie.intake.models import ReceivedMessage
from vigie.records.content import stream_verified
from vigie.records.models import Document, DocumentKind, Patient, PendingDocument
from vigie.vault.group import SealGroup

pytestmark = pytest.mark.django_db

MARTIN_NIR = make_nir("2850469123045")
MOTHER_NIR = make_nir("2880375056112")


@pytest.fixture
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("drop")


@pytest.fixture
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outbox")


@pytest.fixture
def folder(drop: Path, outbox: Path, vault_home: Path) -> Iterator[HotFolder]:
    hot = HotFolder(
        drop,
        outbox,
        source_system="LABO-BROTTEAUX",
        settle=0,
        out=io.StringIO(),
        # The corpus's day: its date-bound refusals (a birth date in the future) stay true.
        today=lambda: TODAY,
    )
    hot.prepare()
    yield hot
    hot.close()


@pytest.fixture
def martin(vault_home: Path) -> Patient:
    """The patient whose NIR the corpus's base report carries, born on its birth date."""
    return Patient.objects.create(
        ipp="IPP-MARTIN",
        ins=MARTIN_NIR,
        family_name="MARTIN",
        given_names="Hélène",
        birth_date=datetime.date(1985, 4, 3),
        sex="F",
    )


def names(where: Path) -> set[str]:
    return {p.name for p in where.iterdir() if not p.name.startswith(".")}


def only(outcomes: tuple[list[Outcome], int]) -> Outcome:
    found, _settling = outcomes
    assert len(found) == 1, found
    return found[0]


def rows() -> list[Document | PendingDocument]:
    return [*Document.objects.all(), *PendingDocument.objects.all()]


def content(row: Document | PendingDocument) -> bytes:
    return b"".join(stream_verified(row))


def blobs() -> set[str]:
    return set(vault.get_store().iter_ids())


def row_of(document_id: str) -> Document | PendingDocument:
    found = Document.objects.filter(pk=document_id).first()
    return found or PendingDocument.objects.get(pk=document_id)


# -- the corpus ------------------------------------------------------------------------------


CORPUS_FILES = sorted(path.name for path in CORPUS.glob("*.hpr"))


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_file_gets_the_outcome_its_expected_parse_says(
    folder: HotFolder, drop: Path, outbox: Path, martin: Patient, name: str
) -> None:
    raw = (CORPUS / name).read_bytes()
    expected = json.loads((CORPUS / name).with_suffix(".json").read_text(encoding="utf-8"))
    (drop / name).write_bytes(raw)
    outcome = only(folder.scan())
    stem = name.removesuffix(".hpr")
    if "error" in expected:
        assert outcome.status == "quarantined"
        assert names(outbox / "quarantine") == {name, f"{stem}.reason.txt"}
        reason = (outbox / "quarantine" / f"{stem}.reason.txt").read_text()
        assert expected["error"]["reason"] in reason
        if expected["error"]["line"] is not None:
            assert f"line {expected['error']['line']}:" in reason
        assert rows() == []
        assert blobs() == set()
        return
    parsed = parse(raw, today=TODAY)
    patients = expected["patients"]
    ids = outcome.document_id.split(",")
    assert len(ids) == len(patients) == len(parsed.patients)
    assert name in names(outbox / "done")
    assert name not in names(drop)
    for index, (document_id, facts) in enumerate(zip(ids, patients, strict=True)):
        row = row_of(document_id)
        # The patient's own bytes, exactly as received: nothing of another patient's.
        assert content(row) == patient_bytes(raw, parsed, parsed.patients[index])
        assert row.kind == DocumentKind.LAB_RESULT
        assert row.content_type == CONTENT_TYPE
        assert row.source_system == "LABO-BROTTEAUX"
        exact = facts["nir"] == MARTIN_NIR and facts["birth_date"] == "1985-04-03"
        if exact:
            assert isinstance(row, Document)
            assert row.patient == martin
        else:
            # Names and birth date alone never attach a document.
            assert isinstance(row, PendingDocument)
            assert row.demographics["family_name"] == facts["family_name"]
    assert ReceivedMessage.objects.count() == len(patients)


# -- splitting and matching ------------------------------------------------------------------


def test_a_multi_patient_file_becomes_one_document_per_patient_each_with_its_own_lines(
    folder: HotFolder, drop: Path, martin: Patient
) -> None:
    raw = cases()["multi_patient_three"][0]
    (drop / "batch.hpr").write_bytes(raw)
    outcome = only(folder.scan())
    first, second, third = (row_of(i) for i in outcome.document_id.split(","))
    assert isinstance(first, Document)
    assert first.patient == martin
    assert isinstance(second, PendingDocument)
    assert isinstance(third, PendingDocument)
    texts = [content(row).decode("latin-1") for row in (first, second, third)]
    assert texts[0].splitlines()[1] == "MARTIN"
    assert texts[1].splitlines()[1] == "BERNARD"
    assert texts[2].splitlines()[1] == "ROUSSEAU"
    for text, others in ((texts[0], ("BERNARD", "ROUSSEAU")), (texts[1], ("MARTIN", "ROUSSEAU"))):
        assert not any(other in text for other in others)
    # Each part runs through the marker that closes it: a complete HPRIM file on its own.
    assert [text.splitlines()[-1] for text in texts] == ["****FIN****"] * 3
    assert all(text.count("****") == 2 + 2 * ("****LAB****" in text) for text in texts)
    # One arrival event per patient, each naming its part of the file.
    events = AuditEvent.objects.filter(action="intake.received").order_by("seq")
    assert [event.extra["hprim_patient"] for event in events] == [1, 2, 3]


def test_attack_a_childs_file_under_the_mothers_nir_never_reaches_the_mothers_record(
    folder: HotFolder, drop: Path
) -> None:
    mother = Patient.objects.create(
        ipp="IPP-MOTHER",
        ins=MOTHER_NIR,
        family_name="ROUSSEAU",
        given_names="Claire",
        birth_date=datetime.date(1988, 3, 9),
        sex="F",
    )
    (drop / "leo.hpr").write_bytes(cases()["nir_of_parent_for_child"][0])
    outcome = only(folder.scan())
    assert outcome.status == "pending"
    assert not Document.objects.filter(patient=mother).exists()
    pending = PendingDocument.objects.get()
    assert pending.demographics["birth_date"] == "2019-06-14"
    assert "ins" not in pending.identifiers


def test_attack_a_nir_whose_holder_has_another_birth_date_does_not_attach(
    folder: HotFolder, drop: Path, martin: Patient
) -> None:
    # Same NIR, same year and month of birth, another day: the number is the holder's,
    # the results someone else's (a twin, a spouse under the same number).
    raw = hprim([Report(given_name="Julie", birth_date="17/04/1985")])
    (drop / "julie.hpr").write_bytes(raw)
    assert only(folder.scan()).status == "pending"
    assert not Document.objects.exists()


def test_names_and_birth_date_of_a_known_patient_without_a_nir_only_wait_for_reconciliation(
    folder: HotFolder, drop: Path, martin: Patient
) -> None:
    (drop / "nonir.hpr").write_bytes(hprim([Report(nir="")]))
    assert only(folder.scan()).status == "pending"
    assert not Document.objects.exists()


@pytest.mark.parametrize("name", ["a.HPR", "b.hpm", "c.hprim", "d.txt", "e.Txt"])
def test_every_hprim_extension_is_taken(folder: HotFolder, drop: Path, name: str) -> None:
    (drop / name).write_bytes(hprim([Report()]))
    assert only(folder.scan()).status == "pending"
    assert PendingDocument.objects.count() == 1


# -- nothing lost, never half-stored ---------------------------------------------------------


def test_a_store_failing_at_the_second_patient_stores_nothing_and_leaves_the_file(
    folder: HotFolder, drop: Path, martin: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_seal = SealGroup.seal
    calls: list[int] = []

    def full_at_the_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_seal(*args, **kwargs)

    # The round seals its blobs through a SealGroup (records.batch), fsynced together.
    monkeypatch.setattr(SealGroup, "seal", full_at_the_second)
    raw = cases()["multi_patient_three"][0]
    (drop / "batch.hpr").write_bytes(raw)
    assert folder.scan() == ([], 0)
    assert len(calls) == 2  # the first patient was sealed, then the store failed
    assert rows() == []
    assert not ReceivedMessage.objects.exists()
    assert blobs() == set()  # the first patient's blob went with its rolled-back row
    assert not AuditEvent.objects.filter(action="intake.received").exists()
    assert (drop / "batch.hpr").read_bytes() == raw
    assert "No space left" in folder.out.getvalue()  # type: ignore[union-attr]
    monkeypatch.undo()
    outcome = only(folder.scan())
    assert len(outcome.document_id.split(",")) == 3
    assert len(rows()) == 3
    assert len(blobs()) == 3


def test_an_audit_failure_at_the_third_patient_stores_nothing_and_leaves_the_file(
    folder: HotFolder, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def audit_down_at_the_third(action: str, **kwargs: Any) -> Any:
        if kwargs.get("extra", {}).get("hprim_patient") == 3:
            raise AuditUnavailable("audit log unavailable: disk I/O error")
        return record(action, **kwargs)

    monkeypatch.setattr(folder_hprim, "record", audit_down_at_the_third)
    (drop / "batch.hpr").write_bytes(cases()["multi_patient_three"][0])
    assert folder.scan() == ([], 0)
    assert rows() == []
    assert blobs() == set()
    assert names(drop) == {"batch.hpr"}
    monkeypatch.undo()
    assert only(folder.scan()).status == "pending"
    assert len(rows()) == 3


def test_the_same_bytes_under_another_name_are_not_stored_twice(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    raw = cases()["multi_patient_three"][0]
    (drop / "CR_20261125_0810.hpr").write_bytes(raw)
    first = only(folder.scan())
    (drop / "CR_20261125_0915.hpr").write_bytes(raw)
    again = only(folder.scan())
    assert again.status == "duplicate"
    assert again.document_id == first.document_id
    assert len(rows()) == 3
    note = (outbox / "done" / "CR_20261125_0915.reason.txt").read_text()
    assert "already received" in note


def test_a_file_stored_just_before_a_crash_is_moved_on_the_next_pass_not_stored_again(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The crash between the commit and the move, played by a move that fails once.
    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(folder, "_move_round", crash)
    (drop / "crash.hpr").write_bytes(hprim([Report()]))
    assert folder.scan() == ([], 0)
    assert len(rows()) == 1
    monkeypatch.undo()
    assert only(folder.scan()).status == "duplicate"
    assert len(rows()) == 1
    assert "crash.hpr" in names(outbox / "done")


def test_parse_warnings_reach_the_lab_in_done_and_the_clerk_beside_the_document(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    (drop / "cut.hpr").write_bytes(cases()["no_end_marker"][0])
    outcome = only(folder.scan())
    note = (outbox / "done" / "cut.reason.txt").read_text()
    assert "no ****FIN****" in note
    pending = PendingDocument.objects.get(pk=outcome.document_id)
    assert any("no ****FIN****" in warning for warning in pending.content_warnings)
    assert not pending.active_content


def test_a_file_named_like_another_files_reason_never_overwrites_it(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    (drop / "x.txt").write_bytes(cases()["broken_empty"][0])
    only(folder.scan())
    (drop / "x.reason.txt").write_bytes(cases()["broken_short_header"][0])
    only(folder.scan())
    quarantine = outbox / "quarantine"
    assert "the file is empty" in (quarantine / "x.reason.txt").read_text()
    assert names(quarantine) == {
        "x.txt",
        "x.reason.txt",
        "x.reason~2.txt",
        "x.reason~2.reason.txt",
    }
    assert "12 lines" in (quarantine / "x.reason~2.reason.txt").read_text()


def test_attack_a_link_named_hpr_is_quarantined_without_being_followed(
    folder: HotFolder, drop: Path, outbox: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "secret.hpr"
    canary.write_bytes(hprim([Report()]))
    (drop / "link.hpr").symlink_to(canary)
    outcome = only(folder.scan())
    assert outcome.status == "quarantined"
    assert "never follows a link" in (outbox / "quarantine" / "link.reason.txt").read_text()
    assert rows() == []
    assert canary.exists()


# -- rounds: many files, one fsync wave, one transaction, one set of directory fsyncs --------


def _lab(n: int, patients: int = 1) -> bytes:
    """A distinct file of `patients` patients nobody has here (they wait for reconciliation)."""
    return hprim([Report(nir="", reference=f"R{n:04d}-{p}") for p in range(patients)])


def _round_of(drop: Path, count: int, patients: int = 1) -> dict[str, bytes]:
    files = {f"lab{n:02d}.hpr": _lab(n, patients) for n in range(count)}
    for name, raw in files.items():
        (drop / name).write_bytes(raw)
    return files


def test_a_round_stores_every_file_with_one_directory_fsync_per_place(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _round_of(drop, 6, patients=2)
    synced: list[str] = []
    real_fsync = folder.depot.fsync

    def counted() -> None:
        synced.append("depot")
        real_fsync()

    monkeypatch.setattr(folder.depot, "fsync", counted)
    found, _settling = folder.scan()
    assert sorted(o.name for o in found) == sorted(files)
    assert {o.status for o in found} == {"pending"}
    assert names(outbox / "done") == set(files)
    assert names(drop) == set()
    assert synced == ["depot"]  # once for the round's six moves, not once per file
    assert PendingDocument.objects.count() == 12
    assert ReceivedMessage.objects.count() == 12
    for outcome in found:  # each file's patients, each holding its own bytes
        parsed = parse(files[outcome.name])
        parts = [patient_bytes(files[outcome.name], parsed, p) for p in parsed.patients]
        assert [content(row_of(i)) for i in outcome.document_id.split(",")] == parts


def test_one_bad_file_in_a_round_is_refused_alone_and_the_others_are_stored(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    files = _round_of(drop, 4)
    (drop / "lab02.hpr").write_bytes(cases()["broken_short_header"][0])
    found, _settling = folder.scan()
    status = {o.name: o.status for o in found}
    assert status == {
        "lab00.hpr": "pending",
        "lab01.hpr": "pending",
        "lab02.hpr": "quarantined",
        "lab03.hpr": "pending",
    }
    assert "12 lines" in (outbox / "quarantine" / "lab02.reason.txt").read_text()
    assert names(outbox / "done") == set(files) - {"lab02.hpr"}
    assert len(rows()) == 3
    assert len(blobs()) == 3


def test_a_patient_refused_at_its_check_refuses_its_whole_file_and_no_other(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A check made at storing time (records.batch), after the parse accepted the file: the
    # second patient of lab01 carries a title with a control character.
    real_meta = channel._meta

    def bad_title_for_lab01_patient_2(report: Any, source_system: str) -> Any:
        meta = real_meta(report, source_system)
        if report.reference == "R0001-1":
            return dataclasses.replace(meta, title="bad\x01title")
        return meta

    monkeypatch.setattr(channel, "_meta", bad_title_for_lab01_patient_2)
    files = _round_of(drop, 3, patients=3)
    found, _settling = folder.scan()
    status = {o.name: o.status for o in found}
    assert status == {"lab00.hpr": "pending", "lab01.hpr": "quarantined", "lab02.hpr": "pending"}
    assert "control character" in (outbox / "quarantine" / "lab01.reason.txt").read_text()
    # Whole file or nothing: neither lab01's first nor its third patient was kept.
    assert len(rows()) == len(blobs()) == 6
    assert (outbox / "quarantine" / "lab01.hpr").read_bytes() == files["lab01.hpr"]


def test_a_failed_fsync_wave_leaves_every_file_of_the_round_with_nothing_kept(
    folder: HotFolder, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_error(self: SealGroup, executor: Any = None) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(SealGroup, "sync", disk_error)
    files = _round_of(drop, 4, patients=2)
    assert folder.scan() == ([], 0)
    assert names(drop) == set(files)
    assert rows() == []
    assert blobs() == set()
    assert not ReceivedMessage.objects.exists()
    assert "Input/output error" in folder.out.getvalue()  # type: ignore[union-attr]
    monkeypatch.undo()
    found, _settling = folder.scan()
    assert len(found) == 4
    assert len(rows()) == 8


def test_an_audit_log_that_refuses_the_round_keeps_nothing_of_it(
    folder: HotFolder, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(audit_log, "append_batch", refused)
    files = _round_of(drop, 3, patients=2)
    assert folder.scan() == ([], 0)
    assert names(drop) == set(files)
    assert rows() == []
    assert blobs() == set()
    assert not ReceivedMessage.objects.exists()
    monkeypatch.undo()
    assert len(folder.scan()[0]) == 3


def test_one_files_audit_failure_fails_that_file_alone_and_the_round_stores_the_others(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def audit_down_for_lab01(action: str, **kwargs: Any) -> Any:
        if kwargs.get("extra", {}).get("file") == "lab01.hpr":
            raise AuditUnavailable("audit log unavailable: disk I/O error")
        return record(action, **kwargs)

    monkeypatch.setattr(folder_hprim, "record", audit_down_for_lab01)
    _round_of(drop, 3, patients=3)
    found, _settling = folder.scan()
    assert sorted(o.name for o in found) == ["lab00.hpr", "lab02.hpr"]
    assert names(drop) == {"lab01.hpr"}
    assert len(rows()) == len(blobs()) == 6
    monkeypatch.undo()
    assert only(folder.scan()).name == "lab01.hpr"
    assert len(rows()) == 9


def test_two_copies_of_a_file_in_one_round_are_stored_once(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    raw = _lab(1, patients=3)
    (drop / "CR_0810.hpr").write_bytes(raw)
    (drop / "CR_0915.hpr").write_bytes(raw)
    (drop / "other.hpr").write_bytes(_lab(2))
    found, _settling = folder.scan()
    status = {o.name: o.status for o in found}
    assert status == {"CR_0810.hpr": "pending", "CR_0915.hpr": "duplicate", "other.hpr": "pending"}
    first = next(o for o in found if o.name == "CR_0810.hpr")
    again = next(o for o in found if o.name == "CR_0915.hpr")
    assert again.document_id == first.document_id
    assert len(rows()) == 4
    assert ReceivedMessage.objects.count() == 4
    assert "already received" in (outbox / "done" / "CR_0915.reason.txt").read_text()


def test_a_round_stored_before_a_crash_is_moved_on_the_next_pass_not_stored_again(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The crash between the round's commit and its moves, played by moves that fail.
    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(folder, "_move_round", crash)
    files = _round_of(drop, 5, patients=2)
    assert folder.scan() == ([], 0)
    assert len(rows()) == 10
    assert names(drop) == set(files)
    monkeypatch.undo()
    found, _settling = folder.scan()
    assert {o.status for o in found} == {"duplicate"}
    assert len(found) == 5
    assert len(rows()) == 10
    assert names(outbox / "done") >= set(files)


def test_a_crash_between_a_rounds_renames_and_its_fsyncs_loses_nothing(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The renames done, the directory fsync failing: the files are in done/ (or, had the
    # machine died, back in the depot, where they would be duplicates), and stored once.
    def fails() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(folder.depot, "fsync", fails)
    files = _round_of(drop, 3)
    assert folder.scan() == ([], 0)
    monkeypatch.undo()
    assert names(outbox / "done") == set(files)
    assert len(rows()) == 3
    for name in files:  # the machine died: the renames were lost, the files are back
        (outbox / "done" / name).rename(drop / name)
    found, _settling = folder.scan()
    assert {o.status for o in found} == {"duplicate"}
    assert len(rows()) == 3


# -- a file replaced by its sender after Vigie read it ---------------------------------------


def _swap_before_the_move(
    monkeypatch: pytest.MonkeyPatch, folder: HotFolder, swap: Any
) -> list[str]:
    """Run `swap` once, after the round is committed and before its first file moves: the
    window where the sender's new file used to be moved to done/ as if stored."""
    swapped: list[str] = []
    real = type(folder.box).move_in

    def move_in(box: Any, depot: Any, name: str, place: str, target: str) -> str:
        if not swapped:
            swapped.append(name)
            swap(name)
        return real(box, depot, name, place, target)

    monkeypatch.setattr(type(folder.box), "move_in", move_in)
    return swapped


def stored_contents() -> list[bytes]:
    return sorted(content(row) for row in rows())


def stored_as(*files: bytes) -> list[bytes]:
    """What `stored_contents` holds once these files are stored: each patient's own part."""
    parsed = [(raw, parse(raw)) for raw in files]
    return sorted(patient_bytes(raw, p, report) for raw, p in parsed for report in p.patients)


def test_attack_a_file_renamed_over_after_the_read_is_given_back_and_stored_not_lost(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _lab(1), _lab(2)
    (drop / "CR.hpr").write_bytes(first)

    def renamed_over(name: str) -> None:
        # The lab's software delivers a new result under the same name: write, then rename.
        (drop / ".CR.tmp").write_bytes(second)
        (drop / ".CR.tmp").rename(drop / name)

    _swap_before_the_move(monkeypatch, folder, renamed_over)
    outcome = only(folder.scan())
    assert outcome.status == "pending"  # the file read was stored...
    assert stored_contents() == stored_as(first)
    # ...and the one renamed over it was neither moved to done/ as if stored nor lost.
    assert (drop / "CR.hpr").read_bytes() == second
    assert "CR.hpr" not in names(outbox / "done")
    assert "replaced after Vigie read it" in (outbox / "done" / "CR.reason.txt").read_text()
    said = folder.out
    assert isinstance(said, io.StringIO)
    assert "replaced after Vigie read it" in said.getvalue()
    monkeypatch.undo()
    assert only(folder.scan()).status == "pending"
    assert stored_contents() == stored_as(first, second)
    assert names(drop) == set()
    assert not [n for n in (outbox / "done").iterdir() if n.name.startswith(".vigie-moving-")]


def test_attack_a_file_rewritten_in_place_after_the_read_is_given_back_and_stored(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _lab(3), _lab(4)
    (drop / "CR.hpr").write_bytes(first)
    # Same inode, new bytes: only its size and modification time tell.
    _swap_before_the_move(monkeypatch, folder, lambda name: (drop / name).write_bytes(second))
    only(folder.scan())
    assert (drop / "CR.hpr").read_bytes() == second
    monkeypatch.undo()
    only(folder.scan())
    assert stored_contents() == stored_as(first, second)


def test_attack_a_replaced_file_is_not_deleted_with_delete_done(
    folder: HotFolder, drop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder.delete_done = True
    first, second = _lab(5), _lab(6)
    (drop / "CR.hpr").write_bytes(first)

    def renamed_over(name: str) -> None:
        (drop / ".CR.tmp").write_bytes(second)
        (drop / ".CR.tmp").rename(drop / name)

    # --delete-done used to unlink whatever the name led to at the end of the round.
    real = folder.box.remove_read

    def remove_read(depot: Any, name: str) -> str:
        renamed_over(name)
        return real(depot, name)

    monkeypatch.setattr(folder.box, "remove_read", remove_read)
    only(folder.scan())
    assert (drop / "CR.hpr").read_bytes() == second
    monkeypatch.undo()
    only(folder.scan())
    assert stored_contents() == stored_as(first, second)
    assert names(drop) == set()


def test_a_new_file_under_the_given_back_name_is_never_overwritten(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = _lab(7), _lab(8), _lab(9)
    (drop / "CR.hpr").write_bytes(first)
    real = type(folder.box).give_back

    def third_arrives(box: Any, depot: Any, place: str, moving: str, name: str) -> str:
        (drop / name).write_bytes(third)  # yet another delivery, in the same instant
        return real(box, depot, place, moving, name)

    monkeypatch.setattr(type(folder.box), "give_back", third_arrives)
    _swap_before_the_move(monkeypatch, folder, lambda name: (drop / name).write_bytes(second))
    only(folder.scan())
    assert (drop / "CR.hpr").read_bytes() == third
    assert (drop / "CR~2.hpr").read_bytes() == second
    monkeypatch.undo()
    folder.scan()
    assert stored_contents() == stored_as(first, second, third)


def test_a_file_left_on_its_way_out_by_a_crash_is_given_back_once_and_never_stored_twice(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    stored, unstored = _lab(10), _lab(11)
    (drop / "A.hpr").write_bytes(stored)
    only(folder.scan())
    # A crash between a file's two renames leaves it under its moving name in done/: one
    # whose round committed (stored), and one whose bytes were a replacement (not stored).
    (outbox / "done" / "A.hpr").rename(outbox / "done" / ".vigie-moving-A.hpr")
    (outbox / "done" / ".vigie-moving-B.hpr").write_bytes(unstored)
    with folder.locked():
        assert names(drop) == {"A.hpr", "B.hpr"}
        found, _settling = folder.scan()
    assert {o.name: o.status for o in found} == {"A.hpr": "duplicate", "B.hpr": "pending"}
    assert stored_contents() == stored_as(stored, unstored)
    assert not [n for n in (outbox / "done").iterdir() if n.name.startswith(".vigie-moving-")]


def test_a_round_looks_its_patients_nirs_up_once_and_attaches_each_to_its_own_patient(
    folder: HotFolder, drop: Path
) -> None:
    # Each patient's NIR used to be looked up twice per file (the NIR check, then the match):
    # 12 queries for 6 files. One query for the round now, and every match still exact.
    patients = {}
    for n in range(6):
        nir = make_nir(f"285046912310{n}")
        patients[nir] = Patient.objects.create(
            ipp=f"IPP-R{n}", ins=nir, family_name="MARTIN", given_names="Hélène",
            birth_date=datetime.date(1985, 4, 3), sex="F",
        )  # fmt: skip
        (drop / f"lab{n}.hpr").write_bytes(hprim([Report(nir=nir, reference=f"R{n}")]))
    with CaptureQueriesContext(connection) as queries:
        found, _settling = folder.scan()
    assert {o.status for o in found} == {"stored"}
    by_ins = [q["sql"] for q in queries.captured_queries if re.search(r"\"ins\" (=|IN)", q["sql"])]
    assert len(by_ins) == 1, "\n".join(q[-300:] for q in by_ins)
    for outcome in found:
        document = Document.objects.get(pk=outcome.document_id)
        n = int(outcome.name[3])
        assert document.patient.ipp == f"IPP-R{n}"


def test_a_database_away_at_the_rounds_nir_look_up_leaves_every_file_to_wait(
    folder: HotFolder, drop: Path, martin: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    class away:  # noqa: N801 - stands for the context manager function it replaces
        def __init__(self, nirs: Any) -> None:
            list(nirs)

        def __enter__(self) -> None:
            raise DatabaseError("could not connect to server")

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(folder_hprim, "ins_lookups", away)
    (drop / "CR.hpr").write_bytes(hprim([Report()]))
    (drop / "bad.hpr").write_bytes(cases()["broken_short_header"][0])
    found, _settling = folder.scan()
    assert [(o.name, o.status) for o in found] == [("bad.hpr", "quarantined")]  # needs no database
    assert names(drop) == {"CR.hpr"}
    assert rows() == []
    said = folder.out
    assert isinstance(said, io.StringIO)
    assert "database unavailable, CR.hpr waits" in said.getvalue()
    monkeypatch.undo()
    assert only(folder.scan()).status == "stored"
    assert Document.objects.get().patient == martin


def test_a_name_at_the_filesystems_limit_is_moved_and_a_swap_under_it_given_back(
    folder: HotFolder, drop: Path, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 251 bytes: no room for the moving name's prefix (255 at most on ext4, XFS, tmpfs), nor
    # for `<stem>.reason.txt`: it goes to done/ under a shorter stem, with its reason.
    long = "L" * 247 + ".hpr"
    first, second = _lab(12), _lab(13)
    (drop / long).write_bytes(first)
    assert only(folder.scan()).status == "pending"
    [kept] = (outbox / "done").glob("L*.hpr")
    assert kept.read_bytes() == first
    assert len(kept.name) < len(long)
    (drop / long).write_bytes(first)  # sent again: a duplicate, whose reason needs a name
    assert only(folder.scan()).status == "duplicate"
    assert len(list((outbox / "done").glob("L*.reason.txt"))) == 1
    (drop / long).write_bytes(second)
    _swap_before_the_move(monkeypatch, folder, lambda name: (drop / name).write_bytes(_lab(14)))
    only(folder.scan())
    assert (drop / long).read_bytes() == _lab(14)
    assert len(list((outbox / "done").glob("L*.hpr"))) == 2
    monkeypatch.undo()
    folder.delete_done = True
    only(folder.scan())
    assert names(drop) == set()
    assert stored_contents() == stored_as(first, second, _lab(14))
