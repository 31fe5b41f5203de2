"""The hot folder (`vigie intake folder`): every bad input ends in done/ or quarantine/ with
its reason, nothing leaves the folder unstored, nothing is stored twice.

Real files in a real directory and the real `receive()`; time is injected (a fake clock)
where the behaviour depends on it, so no test sleeps.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from vigie.audit.models import AuditEvent
from vigie.intake.folder import HotFolder, Outcome
from vigie.intake.models import ReceivedMessage
from vigie.intake.sidecar import parse_sidecar
from vigie.intake.testing import another_pdf, sidecar
from vigie.records.models import Document, Patient, PendingDocument
from vigie.records.testing import lab_report_pdf, make_patient, pdf_with_document_javascript

pytestmark = pytest.mark.django_db

PDF = lab_report_pdf()


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Outside VIGIE_HOME, like a real sender's drop zone.
    return tmp_path_factory.mktemp("drop")


@pytest.fixture
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Vigie's own folder for done/ and quarantine/: apart from the drop zone, mode 0700.
    return tmp_path_factory.mktemp("outbox")


@pytest.fixture
def patient(vault_home: Path) -> Patient:
    return make_patient("MARTINEAU")


@pytest.fixture
def folder(drop: Path, outbox: Path) -> Iterator[HotFolder]:
    hot = HotFolder(
        drop, outbox, source_system="LABO-CENTRAL", settle=0, sidecar_wait=600, out=io.StringIO()
    )
    hot.prepare()
    yield hot
    hot.close()


def put(drop: Path, stem: str, content: bytes, side: dict[str, Any] | bytes | None) -> None:
    if side is not None:
        raw = side if isinstance(side, bytes) else json.dumps(side, indent=2).encode()
        (drop / f"{stem}.json").write_bytes(raw)
    (drop / f"{stem}.pdf").write_bytes(content)


def names(where: Path) -> set[str]:
    return {p.name for p in where.iterdir() if not p.name.startswith(".")}


def only(outcomes: tuple[list[Outcome], int]) -> Outcome:
    found, _settling = outcomes
    assert len(found) == 1, found
    return found[0]


def reason(where: Path, stem: str) -> str:
    return (where / f"{stem}.reason.txt").read_text()


def quarantined(drop: Path, outbox: Path, stem: str) -> str:
    assert {f"{stem}.pdf"} <= names(outbox / "quarantine")
    assert not (drop / f"{stem}.pdf").exists()
    assert not (drop / f"{stem}.json").exists()
    return reason(outbox / "quarantine", stem)


# -- what is stored --------------------------------------------------------------------------


def test_it_stores_a_pdf_with_its_sidecar_and_moves_both_to_done(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "CR-0042", PDF, sidecar(patient))
    outcome = only(folder.scan())
    assert outcome.status == "stored"
    document = Document.objects.get(pk=outcome.document_id)
    assert document.patient == patient
    assert document.title == "Numération formule sanguine"
    assert document.source_system == "LABO-CENTRAL"
    assert names(outbox / "done") == {"CR-0042.pdf", "CR-0042.json"}
    assert names(drop) == set()
    message = ReceivedMessage.objects.get(channel="folder", document_id=document.pk)
    assert message.source == str(drop.resolve())
    event = AuditEvent.objects.get(action="intake.received")
    assert event.extra["file"] == "CR-0042.pdf"
    assert event.extra["control_id"] == message.control_id


def test_an_unknown_patient_waits_for_reconciliation_and_the_file_goes_to_done(
    folder: HotFolder, drop: Path, vault_home: Path, outbox: Path
) -> None:
    put(drop, "unknown", PDF, sidecar(None))
    outcome = only(folder.scan())
    assert outcome.status == "pending"
    pending = PendingDocument.objects.get(pk=outcome.document_id)
    assert pending.identifiers == {"ipp": "UNKNOWN9", "ipp_source": "LABO-CENTRAL"}
    assert not Document.objects.exists()
    assert ReceivedMessage.objects.get(pending_id=pending.pk)
    # done/ says nothing about the patient being unknown here (see the attack test).
    assert names(outbox / "done") == {"unknown.pdf", "unknown.json"}


def test_a_pdf_with_javascript_is_stored_flagged_and_the_sender_is_told(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "armed", pdf_with_document_javascript(), sidecar(patient))
    outcome = only(folder.scan())
    assert outcome.status == "stored"
    document = Document.objects.get(pk=outcome.document_id)
    assert document.active_content
    assert "javascript" in document.content_warnings
    assert "javascript" in reason(outbox / "done", "armed")


def test_a_duplicate_goes_to_done_without_being_stored_twice(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "twice", PDF, sidecar(patient))
    first = only(folder.scan())
    put(drop, "twice", PDF, sidecar(patient))
    second = only(folder.scan())
    assert second.status == "duplicate"
    assert second.document_id == first.document_id
    assert Document.objects.count() == 1
    assert ReceivedMessage.objects.count() == 1
    # Nothing overwritten: the second copy sits next to the first, with its explanation.
    assert {"twice.pdf", "twice.json", "twice~2.pdf", "twice~2.json"} <= names(outbox / "done")
    assert "already received" in reason(outbox / "done", "twice~2")
    assert not (outbox / "done" / "twice.reason.txt").exists()


def test_the_same_name_with_other_bytes_is_a_new_document(
    folder: HotFolder, drop: Path, patient: Patient
) -> None:
    put(drop, "result", PDF, sidecar(patient))
    folder.scan()
    put(drop, "result", another_pdf("revised"), sidecar(patient))
    assert only(folder.scan()).status == "stored"
    assert Document.objects.count() == 2


def test_delete_done_removes_stored_files_but_keeps_quarantine(
    drop: Path, patient: Patient, outbox: Path
) -> None:
    folder = HotFolder(
        drop, outbox, source_system="LABO-CENTRAL", settle=0, delete_done=True, out=io.StringIO()
    )
    folder.prepare()
    put(drop, "stored", PDF, sidecar(patient))
    put(drop, "empty", b"", sidecar(patient))
    folder.scan()
    assert names(outbox / "done") == set()
    assert Document.objects.count() == 1
    assert names(drop) == set()
    assert "empty" in quarantined(drop, outbox, "empty")


# -- what is refused, and why ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty (0 bytes)"),
        (PDF[: len(PDF) // 2], "truncated"),
        (b"<html><body>502 Bad Gateway</body></html>", "not a application/pdf"),
    ],
    ids=["zero-bytes", "truncated", "html-named-pdf"],
)
def test_a_bad_pdf_is_quarantined_with_the_check_that_refused_it(
    folder: HotFolder, drop: Path, patient: Patient, content: bytes, expected: str, outbox: Path
) -> None:
    put(drop, "bad", content, sidecar(patient))
    assert only(folder.scan()).status == "quarantined"
    assert expected in quarantined(drop, outbox, "bad")
    assert (outbox / "quarantine" / "bad.json").exists()
    assert (outbox / "quarantine" / "bad.pdf").read_bytes() == content
    assert not Document.objects.exists()
    assert not ReceivedMessage.objects.exists()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{\n  "patient": {"ins": "1"},\n  "document": {,\n}',
            "Expecting property name enclosed in double quotes at line 3, column 16",
        ),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (
            json.dumps({"patient": {}, "source_system": "X"}).encode(),
            "no 'document' object",
        ),
        (
            json.dumps(
                {"patient": {"ins": "1"}, "document": {"kind": "lab_result"}, "source_system": "X"}
            ).encode(),
            "missing required field(s): document.title, document.clinical_date",
        ),
        (
            json.dumps(
                {
                    "patient": {"insee": "1"},
                    "document": {"kind": "x", "title": "t", "clinical_date": "2026-01-01"},
                    "source_system": "X",
                }
            ).encode(),
            "unknown field(s) in the sidecar: patient.insee",
        ),
        (
            json.dumps(
                {
                    "patient": {"ins": "1"},
                    "document": {"kind": "x", "title": "t", "clinical_date": "28/11/2026"},
                    "source_system": "X",
                }
            ).encode(),
            "'document.clinical_date' must be a date written YYYY-MM-DD",
        ),
        (
            json.dumps(
                {
                    "patient": {"ins": 285037500101234},
                    "document": {"kind": "x", "title": "t", "clinical_date": "2026-11-28"},
                    "source_system": "X",
                }
            ).encode(),
            "'patient.ins' must be a string",
        ),
    ],
    ids=[
        "invalid-json",
        "not-utf8",
        "not-object",
        "no-document",
        "missing-title",
        "unknown-field",
        "bad-date",
        "number-ins",
    ],
)
def test_a_bad_sidecar_is_quarantined_with_what_to_fix(
    folder: HotFolder, drop: Path, patient: Patient, raw: bytes, expected: str, outbox: Path
) -> None:
    put(drop, "meta", PDF, raw)
    assert only(folder.scan()).status == "quarantined"
    text = quarantined(drop, outbox, "meta")
    assert text.startswith("meta.json: ")
    assert expected in text
    assert (outbox / "quarantine" / "meta.json").read_bytes() == raw


def test_an_unknown_kind_is_quarantined_naming_the_accepted_kinds(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "kind", PDF, sidecar(patient, kind="blood_test"))
    folder.scan()
    text = quarantined(drop, outbox, "kind")
    assert "unknown document kind 'blood_test'" in text
    assert "lab_result" in text


def test_a_wrong_ins_key_is_quarantined(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    data = sidecar(patient)
    data["patient"]["ins"] = "285037500101299"
    put(drop, "ins", PDF, data)
    folder.scan()
    assert "invalid INS" in quarantined(drop, outbox, "ins")


def test_a_name_already_in_quarantine_is_not_overwritten(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "again", b"", sidecar(patient))
    folder.scan()
    put(drop, "again", b"<html>", sidecar(patient))
    folder.scan()
    assert (outbox / "quarantine" / "again.pdf").read_bytes() == b""
    assert (outbox / "quarantine" / "again~2.pdf").read_bytes() == b"<html>"
    assert "empty" in reason(outbox / "quarantine", "again")
    assert "not a application/pdf" in reason(outbox / "quarantine", "again~2")


# -- waiting ---------------------------------------------------------------------------------


def test_a_pdf_waits_for_its_sidecar_then_is_quarantined_with_no_sidecar(
    drop: Path, patient: Patient, outbox: Path
) -> None:
    wall = FakeClock(start=(drop).stat().st_ctime)
    folder = HotFolder(
        drop,
        outbox,
        source_system="LABO-CENTRAL",
        settle=0,
        sidecar_wait=600,
        wall_clock=wall,
        out=io.StringIO(),
    )
    folder.prepare()
    put(drop, "alone", PDF, None)
    wall.now += 10
    assert folder.scan() == ([], 0)
    assert (drop / "alone.pdf").exists()
    wall.now += 601
    assert only(folder.scan()).status == "quarantined"
    assert "no sidecar" in quarantined(drop, outbox, "alone")
    assert "alone.json" in reason(outbox / "quarantine", "alone")
    assert not Document.objects.exists()


def test_a_sidecar_arriving_in_time_is_used(drop: Path, patient: Patient, outbox: Path) -> None:
    folder = HotFolder(
        drop, outbox, source_system="LABO-CENTRAL", settle=0, sidecar_wait=600, out=io.StringIO()
    )
    folder.prepare()
    put(drop, "late", PDF, None)
    assert folder.scan() == ([], 0)
    (drop / "late.json").write_text(json.dumps(sidecar(patient)))
    assert only(folder.scan()).status == "stored"


def test_a_file_still_growing_is_not_taken_until_it_is_stable(
    drop: Path, patient: Patient, outbox: Path
) -> None:
    clock = FakeClock()
    folder = HotFolder(
        drop, outbox, source_system="LABO-CENTRAL", settle=2, clock=clock, out=io.StringIO()
    )
    folder.prepare()
    (drop / "big.json").write_text(json.dumps(sidecar(patient)))
    pdf = drop / "big.pdf"
    half = len(PDF) // 2
    pdf.write_bytes(PDF[:half])
    assert folder.scan() == ([], 2)  # both just seen
    clock.now += 1.5
    with pdf.open("ab") as handle:
        handle.write(PDF[half:])
    clock.now += 1.5
    assert folder.scan() == ([], 1)  # the PDF changed: its settle time starts again
    clock.now += 1.5
    assert folder.scan() == ([], 1)  # 1.5 s unchanged is not 2
    assert pdf.exists()
    assert not Document.objects.exists()
    clock.now += 1
    assert only(folder.scan()).status == "stored"
    document = Document.objects.get()
    assert document.size == len(PDF)


def test_a_file_held_open_for_writing_is_not_taken_even_when_unchanged(
    drop: Path, patient: Patient, outbox: Path
) -> None:
    clock = FakeClock()
    folder = HotFolder(
        drop, outbox, source_system="LABO-CENTRAL", settle=2, clock=clock, out=io.StringIO()
    )
    folder.prepare()
    (drop / "slow.json").write_text(json.dumps(sidecar(patient)))
    with (drop / "slow.pdf").open("wb") as writer:
        writer.write(PDF)
        writer.flush()
        folder.scan()
        clock.now += 60
        assert folder.scan() == ([], 1)
    clock.now += 2
    assert only(folder.scan()).status == "stored"


@pytest.mark.parametrize("name", [".hidden.pdf", "~lock.pdf", "upload.pdf.part", "x.pdf.tmp"])
def test_temporary_and_hidden_names_are_never_looked_at(
    folder: HotFolder, drop: Path, patient: Patient, name: str, outbox: Path
) -> None:
    (drop / name).write_bytes(b"")
    (drop / (name + ".json")).write_text(json.dumps(sidecar(patient)))
    folder.scan()
    assert (drop / name).exists()
    assert names(outbox / "quarantine") == set()


# -- after a crash ---------------------------------------------------------------------------


def test_a_file_stored_before_a_crash_is_recognised_and_moved_not_stored_again(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "crash", PDF, sidecar(patient))
    stored = only(folder.scan())
    # The state a SIGKILL between the two moves leaves: sidecar in done/, PDF still in DIR.
    (outbox / "done" / "crash.pdf").rename(drop / "crash.pdf")
    restarted = HotFolder(drop, outbox, source_system="LABO-CENTRAL", settle=0, out=io.StringIO())
    outcome = only(restarted.scan())
    assert outcome.status == "duplicate"
    assert outcome.document_id == stored.document_id
    assert Document.objects.count() == 1
    # The PDF joins its own sidecar rather than taking a new name.
    assert {"crash.pdf", "crash.json"} <= names(outbox / "done")
    assert not any(n.startswith("crash~") for n in names(outbox / "done"))


def test_a_quarantine_interrupted_between_moves_is_completed(
    folder: HotFolder, drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "broken", PDF, b"{not json")
    folder.scan()
    (outbox / "quarantine" / "broken.pdf").rename(drop / "broken.pdf")
    restarted = HotFolder(drop, outbox, source_system="LABO-CENTRAL", settle=0, out=io.StringIO())
    assert only(restarted.scan()).status == "quarantined"
    assert names(outbox / "quarantine") == {"broken.pdf", "broken.json", "broken.reason.txt"}
    assert "not valid JSON" in reason(outbox / "quarantine", "broken")


def test_storage_failure_leaves_the_file_where_it_is(
    folder: HotFolder, drop: Path, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigie import vault

    def disk_full(*args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vault, "seal", disk_full)
    put(drop, "later", PDF, sidecar(patient))
    assert folder.scan() == ([], 0)
    assert {"later.pdf", "later.json"} <= names(drop)
    assert not ReceivedMessage.objects.exists()
    assert "No space left" in folder.out.getvalue()  # type: ignore[union-attr]
    monkeypatch.undo()
    assert only(folder.scan()).status == "stored"


# -- the sidecar format and the command ------------------------------------------------------


def test_a_sidecar_with_a_bom_and_only_an_ipp_is_read() -> None:
    raw = "\ufeff" + json.dumps(
        {
            "patient": {"ipp": "P123", "ipp_source": "HIS", "birth_date": "1985-03-14"},
            "document": {"kind": "other", "title": " Lettre ", "clinical_date": "2026-11-01"},
            "source_system": "HIS",
        }
    )
    parsed = parse_sidecar(raw.encode(), source_system="HIS")
    assert parsed.sender.ipp == "P123"
    assert parsed.sender.ins is None
    assert parsed.sender.birth_date is not None
    assert parsed.meta.title == "Lettre"
    assert parsed.meta.author == ""


def test_the_command_takes_what_is_ready_and_exits_with_once(
    drop: Path, patient: Patient, outbox: Path
) -> None:
    put(drop, "cmd", PDF, sidecar(patient))
    out = io.StringIO()
    call_command(
        "intake", "folder", str(drop), "--outbox", str(outbox), "--source", "LABO-CENTRAL", "--once", "--settle", "0",
        stdout=out,
    )  # fmt: skip
    assert "cmd.pdf: stored" in out.getvalue()
    assert {"cmd.pdf", "cmd.json"} <= names(outbox / "done")


def test_the_command_refuses_a_folder_inside_vigie_home(
    vault_home: Path, drop: Path, outbox: Path
) -> None:
    inside = vault_home / "incoming"
    inside.mkdir()
    with pytest.raises(CommandError, match="inside VIGIE_HOME"):
        call_command(
            "intake",
            "folder",
            str(inside),
            "--outbox",
            str(outbox),
            "--source",
            "LABO-CENTRAL",
            "--once",
        )
    # done/ and quarantine/ hold plaintext too: not in VIGIE_HOME either.
    with pytest.raises(CommandError, match="inside VIGIE_HOME"):
        call_command(
            "intake",
            "folder",
            str(drop),
            "--outbox",
            str(inside),
            "--source",
            "LABO-CENTRAL",
            "--once",
        )


def test_the_command_refuses_a_missing_folder(tmp_path: Path, outbox: Path) -> None:
    with pytest.raises(CommandError, match="is not a directory"):
        call_command(
            "intake",
            "folder",
            str(tmp_path / "nowhere"),
            "--outbox",
            str(outbox),
            "--source",
            "LABO-CENTRAL",
            "--once",
        )
    with pytest.raises(CommandError, match="install -d -o vigie"):
        call_command(
            "intake",
            "folder",
            str(tmp_path),
            "--outbox",
            str(tmp_path / "nowhere"),
            "--source",
            "LABO",
            "--once",
        )


def test_the_command_needs_an_outbox_apart_from_the_folder(drop: Path) -> None:
    with pytest.raises(CommandError, match="required: --outbox"):
        call_command("intake", "folder", str(drop), "--source", "LABO", "--once")
    (drop / "box").mkdir(mode=0o700)
    with pytest.raises(CommandError, match="must be apart"):
        call_command(
            "intake",
            "folder",
            str(drop),
            "--outbox",
            str(drop / "box"),
            "--source",
            "LABO",
            "--once",
        )


def test_two_watchers_on_one_folder_are_refused(
    folder: HotFolder, drop: Path, outbox: Path
) -> None:
    other = HotFolder(drop, outbox, source_system="LABO-CENTRAL")
    with folder.locked(), pytest.raises(CommandError, match="already watching"):  # noqa: SIM117
        with other.locked():
            pass


def test_a_large_backlog_is_taken_in_one_pass(
    folder: HotFolder, drop: Path, patient: Patient
) -> None:
    for n in range(25):
        put(drop, f"b{n:02d}", another_pdf(f"result {n}"), sidecar(patient))
    found, settling = folder.scan()
    assert settling == 0
    assert [o.status for o in found] == ["stored"] * 25
    assert "25 files to take" in folder.out.getvalue()  # type: ignore[union-attr]
