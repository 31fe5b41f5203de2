"""The hot folder against a hostile writer: the lab's drop account, which may write in the depot.

The depot is laid out as in production (owned by Vigie's user, group of the drop account,
mode 2770, no sticky bit); the drop account is the real unprivileged user `nobody`, and its
moves are real processes running as that user (`sh -c` with setuid), so the kernel decides
what it can and cannot touch. Vigie's outbox is the test's private folder (mode 0700).
The canary stands for `keyring.json`: a file Vigie can write and the drop account cannot read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from vigie.alerts.models import Alert
from vigie.intake.depot import FolderTampered, Outbox
from vigie.intake.folder import HotFolder
from vigie.intake.models import ReceivedMessage
from vigie.intake.testing import another_pdf, sidecar
from vigie.records.models import Document, Patient, PendingDocument
from vigie.records.testing import lab_report_pdf, make_patient

pytestmark = pytest.mark.django_db

DROP = pwd.getpwnam("nobody")
CANARY_BYTES = b'{"keys": "the clinic keyring: every document is unreadable without it"}\n'


@pytest.fixture
def depot() -> Iterator[Path]:
    # Under /tmp itself: the drop account must be able to reach it (pytest's tmp is 0700).
    path = Path(tempfile.mkdtemp(prefix="vigie-depot-"))
    os.chown(path, os.geteuid(), DROP.pw_gid)
    path.chmod(0o2770)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outbox")


@pytest.fixture
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("vigie-home")
    path = home / "keyring.json"
    path.write_bytes(CANARY_BYTES)
    path.chmod(0o600)
    return path


@pytest.fixture
def patient(vault_home: Path) -> Patient:
    return make_patient("MARTINEAU")


@pytest.fixture
def folder(depot: Path, outbox: Path) -> Iterator[HotFolder]:
    hot = HotFolder(
        depot, outbox, source_system="LABO-CENTRAL", settle=0, sidecar_wait=600, out=io.StringIO()
    )
    hot.prepare()
    yield hot
    hot.close()


def as_drop_account(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` as the lab's drop account; each step may fail where the kernel says no."""
    return subprocess.run(
        ["/bin/sh", "-c", script],
        user=DROP.pw_uid,
        group=DROP.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def drop(depot: Path, stem: str, content: bytes, side: dict[str, Any] | None) -> None:
    """The lab's files: plain files owned by the drop account (Vigie must take those)."""
    paths = [depot / f"{stem}.pdf"]
    paths[0].write_bytes(content)
    if side is not None:
        paths.append(depot / f"{stem}.json")
        paths[1].write_text(json.dumps(side))
    for path in paths:
        os.chown(path, DROP.pw_uid, DROP.pw_gid)
        path.chmod(0o660)


def critical_alerts() -> list[Alert]:
    return list(Alert.objects.filter(kind="intake.folder_tampered", severity="critical"))


# -- the symlink at the reason's temp path ---------------------------------------------------


def test_attack_symlink_at_the_reason_temp_path_writes_nothing_outside_the_folder(
    folder: HotFolder, depot: Path, outbox: Path, canary: Path, patient: Patient
) -> None:
    drop(depot, "bad", b"", sidecar(patient))
    # Where Vigie used to write the quarantine's reason temp file, then rename it: the drop
    # account takes quarantine/ over (rename and replace) and plants a link to the keyring.
    attack = as_drop_account(
        f"cd {depot} && (mv quarantine quarantine.old || true) && mkdir -p quarantine && "
        f"ln -s {canary} quarantine/.bad.reason.tmp && "
        f"ln -s {canary} quarantine/bad.reason.txt"
    )
    assert attack.returncode == 0, attack.stderr

    outcome, _settling = folder.scan()

    assert canary.read_bytes() == CANARY_BYTES
    assert [o.status for o in outcome] == ["quarantined"]
    assert "empty" in (outbox / "quarantine" / "bad.reason.txt").read_text()
    # The planted folder is not Vigie's: nothing was written into it.
    assert sorted(p.name for p in (depot / "quarantine").iterdir()) == [
        ".bad.reason.tmp",
        "bad.reason.txt",
    ]


def test_attack_the_drop_account_cannot_reach_done_or_quarantine(
    folder: HotFolder, depot: Path, outbox: Path, canary: Path
) -> None:
    # The outbox is out of its reach: it cannot rename quarantine/ nor plant a link there.
    attack = as_drop_account(f"mv {outbox}/quarantine {depot}/stolen")
    assert attack.returncode != 0
    assert "Permission denied" in attack.stderr
    attack = as_drop_account(f"ln -s {canary} {outbox}/quarantine/.x.reason.txt.tmp")
    assert attack.returncode != 0
    assert (outbox / "quarantine").is_dir()
    assert not (depot / "stolen").exists()


def test_it_never_writes_through_a_link_left_at_its_own_temp_path(
    folder: HotFolder, depot: Path, outbox: Path, canary: Path, patient: Patient
) -> None:
    # Should anything ever leave a link in Vigie's own folder: O_EXCL|O_NOFOLLOW, never through.
    (outbox / "quarantine" / ".bad.reason.txt.tmp").symlink_to(canary)
    drop(depot, "bad", b"", sidecar(patient))
    folder.scan()
    assert canary.read_bytes() == CANARY_BYTES
    assert "empty" in (outbox / "quarantine" / "bad.reason.txt").read_text()
    assert not os.path.lexists(outbox / "quarantine" / ".bad.reason.txt.tmp")


# -- done/ and quarantine/ renamed, replaced, or not Vigie's ---------------------------------


def _rename_away(outbox: Path, place: str, elsewhere: Path) -> None:
    (outbox / place).rename(outbox / f"{place}.old")


def _replace_by_a_link(outbox: Path, place: str, elsewhere: Path) -> None:
    (outbox / place).rename(outbox / f"{place}.old")
    (outbox / place).symlink_to(elsewhere, target_is_directory=True)


def _replace_by_another_users_folder(outbox: Path, place: str, elsewhere: Path) -> None:
    (outbox / place).rename(outbox / f"{place}.old")
    (outbox / place).mkdir()
    os.chown(outbox / place, DROP.pw_uid, DROP.pw_gid)
    (outbox / place).chmod(0o700)


def _open_to_others(outbox: Path, place: str, elsewhere: Path) -> None:
    (outbox / place).chmod(0o777)


@pytest.mark.parametrize("place", ["quarantine", "done"])
@pytest.mark.parametrize(
    "tamper",
    [_rename_away, _replace_by_a_link, _replace_by_another_users_folder, _open_to_others],
    ids=["renamed", "replaced-by-a-link", "replaced-by-another-users-folder", "opened-to-others"],
)
def test_attack_a_renamed_or_replaced_quarantine_or_done_is_refused_with_a_critical_alert(
    folder: HotFolder,
    depot: Path,
    outbox: Path,
    patient: Patient,
    tmp_path: Path,
    place: str,
    tamper: Any,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tamper(outbox, place, elsewhere)
    drop(depot, "bad", b"", sidecar(patient))
    drop(depot, "good", lab_report_pdf(), sidecar(patient))

    with pytest.raises(FolderTampered, match=place):
        folder.scan()

    [alert] = critical_alerts()
    assert place in alert.summary
    # Nothing moved (nothing lost, nothing written where the path now leads) or stored.
    assert sorted(p.name for p in depot.iterdir()) == [
        "bad.json",
        "bad.pdf",
        "good.json",
        "good.pdf",
    ]
    assert list(elsewhere.iterdir()) == []
    assert not Document.objects.exists()


def test_attack_a_quarantine_owned_by_another_user_stops_the_command_with_a_critical_alert(
    depot: Path, outbox: Path
) -> None:
    (outbox / "quarantine").mkdir()
    os.chown(outbox / "quarantine", DROP.pw_uid, DROP.pw_gid)
    with pytest.raises(CommandError, match="belongs to user"):
        call_command(
            "intake",
            "folder",
            str(depot),
            "--outbox",
            str(outbox),
            "--source",
            "LABO-CENTRAL",
            "--once",
        )
    [alert] = critical_alerts()
    assert "quarantine" in alert.summary


@pytest.mark.parametrize("kind", ["another-users-file", "link"])
def test_attack_a_lock_file_not_vigies_own_stops_the_command_with_a_critical_alert(
    depot: Path, outbox: Path, canary: Path, kind: str
) -> None:
    lock = outbox / ".vigie-intake.lock"
    if kind == "link":
        lock.symlink_to(canary)
    else:
        lock.touch()
        os.chown(lock, DROP.pw_uid, DROP.pw_gid)
    with pytest.raises(CommandError, match=r"vigie-intake\.lock"):
        call_command(
            "intake",
            "folder",
            str(depot),
            "--outbox",
            str(outbox),
            "--source",
            "LABO-CENTRAL",
            "--once",
        )
    assert critical_alerts()
    assert canary.read_bytes() == CANARY_BYTES


def test_it_refuses_an_outbox_that_others_can_write(depot: Path, outbox: Path) -> None:
    outbox.chmod(0o777)
    with pytest.raises(CommandError, match="must be writable by Vigie only"):
        call_command(
            "intake",
            "folder",
            str(depot),
            "--outbox",
            str(outbox),
            "--source",
            "LABO-CENTRAL",
            "--once",
        )
    assert critical_alerts()


def test_it_refuses_an_outbox_on_another_filesystem(depot: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == depot.stat().st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    other = Path(tempfile.mkdtemp(dir=shm))
    try:
        with pytest.raises(CommandError, match="same filesystem"):
            call_command(
                "intake",
                "folder",
                str(depot),
                "--outbox",
                str(other),
                "--source",
                "LABO-CENTRAL",
                "--once",
            )
    finally:
        shutil.rmtree(other)


# -- links and subfolders in the depot -------------------------------------------------------


@pytest.mark.parametrize("linked", ["pdf", "json"])
def test_attack_a_symlinked_pdf_is_quarantined_without_being_followed(
    folder: HotFolder, depot: Path, outbox: Path, patient: Patient, tmp_path: Path, linked: str
) -> None:
    # A PDF Vigie can read and the drop account cannot, with a sidecar naming a real patient:
    # followed, it would be filed in that patient's record.
    secret = tmp_path / "secret.pdf"
    secret_bytes = another_pdf("another patient's report")
    secret.write_bytes(secret_bytes)
    secret.chmod(0o600)
    secret_sidecar = tmp_path / "secret.json"
    secret_sidecar.write_text(json.dumps(sidecar(patient)))
    drop(depot, "x", lab_report_pdf(), sidecar(patient))
    target = secret if linked == "pdf" else secret_sidecar
    attack = as_drop_account(f"cd {depot} && rm x.{linked} && ln -s {target} x.{linked}")
    assert attack.returncode == 0, attack.stderr

    [outcome], _settling = folder.scan()

    assert outcome.status == "quarantined"
    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()
    assert not ReceivedMessage.objects.exists()
    reason = (outbox / "quarantine" / "x.reason.txt").read_text()
    assert "symbolic link" in reason
    assert str(target) in reason
    # The link is gone from the depot and was not brought into Vigie's folder.
    assert list(depot.iterdir()) == []
    assert not any(p.is_symlink() for p in (outbox / "quarantine").iterdir())
    assert secret.read_bytes() == secret_bytes
    assert Alert.objects.filter(kind="intake.folder_not_a_file").exists()


def test_attack_a_file_swapped_for_a_symlink_after_the_listing_is_not_followed(
    folder: HotFolder, depot: Path, outbox: Path, patient: Patient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(another_pdf("another patient's report"))
    secret.chmod(0o600)
    drop(depot, "swap", lab_report_pdf(), sidecar(patient))
    ready, _settling = folder.ready()
    assert ready == [("swap.pdf", "swap.json")]  # listed as a plain file...

    # ... and swapped by the writer before Vigie opens it.
    attack = as_drop_account(f"cd {depot} && ln -s {secret} .swap && mv -T .swap swap.pdf")
    assert attack.returncode == 0, attack.stderr
    outcome = folder.take("swap.pdf", "swap.json")

    assert outcome is not None
    assert outcome.status == "quarantined"
    secret_sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert not Document.objects.filter(sha256=secret_sha).exists()
    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()
    assert "symbolic link" in (outbox / "quarantine" / "swap.reason.txt").read_text()
    assert not any(p.is_symlink() for p in (outbox / "quarantine").iterdir())


def test_it_removes_a_link_swapped_in_just_before_the_move(
    folder: HotFolder, depot: Path, outbox: Path, canary: Path
) -> None:
    # The last window: a name checked as a plain file, then replaced before rename() moves it.
    (depot / "late.pdf").symlink_to(canary)
    note = Outbox.move_in(folder.box, folder.depot, "late.pdf", "quarantine", "late.pdf")
    assert "symbolic link" in note
    assert not os.path.lexists(outbox / "quarantine" / "late.pdf")
    # Through the refusal itself: the reason keeps what was found, then says what arrived.
    (depot / "later.pdf").symlink_to(canary)
    outcome = folder._refuse("later.pdf", None, "the file is empty (0 bytes)")
    assert outcome.status == "quarantined"
    reason = (outbox / "quarantine" / "later.reason.txt").read_text()
    assert reason.startswith("the file is empty (0 bytes)\n")
    assert f"later.pdf was a symbolic link to {str(canary)!r}: removed, never followed" in reason
    assert not os.path.lexists(outbox / "quarantine" / "later.pdf")
    assert canary.read_bytes() == CANARY_BYTES


def test_attack_a_subfolder_planted_by_the_drop_account_is_never_entered(
    folder: HotFolder, depot: Path, outbox: Path, patient: Patient
) -> None:
    attack = as_drop_account(
        # Taking over done/ and quarantine/ where an older Vigie kept them, in the depot.
        f"cd {depot} && (mv done done.old; mv quarantine quarantine.old; true) 2>/dev/null && "
        "mkdir -m 777 done quarantine inbox && "
        f"printf '%%s' '{json.dumps(sidecar(patient))}' > inbox/in.json && "
        f"printf '%%PDF-1.4' > inbox/in.pdf"
    )
    assert attack.returncode == 0, attack.stderr
    drop(depot, "bad", b"", sidecar(patient))
    drop(depot, "good", lab_report_pdf(), sidecar(patient))

    outcomes, _settling = folder.scan()

    assert sorted(o.status for o in outcomes) == ["quarantined", "stored"]
    # The drop account's folders received nothing; Vigie's own ones did.
    for sub in ("done", "quarantine"):
        assert list((depot / sub).iterdir()) == []
        assert (depot / sub).stat().st_mode & 0o777 == 0o777
    assert sorted(p.name for p in (depot / "inbox").iterdir()) == ["in.json", "in.pdf"]
    assert {"bad.pdf", "bad.json", "bad.reason.txt"} <= {
        p.name for p in (outbox / "quarantine").iterdir()
    }
    assert {"good.pdf", "good.json"} <= {p.name for p in (outbox / "done").iterdir()}
    assert Document.objects.count() == 1
    said = folder.out.getvalue()  # type: ignore[union-attr]
    assert "Vigie never enters a subfolder" in said
    assert "quarantine/ is not used" in said


def test_attack_a_pdf_renamed_over_after_the_read_is_given_back_not_moved_as_stored(
    folder: HotFolder, depot: Path, outbox: Path, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The drop account (a real process, as that user) replaces the PDF Vigie has just stored,
    # before Vigie moves it: the new file must stay within reach, never pass for stored.
    original = lab_report_pdf()
    drop(depot, "cr", original, sidecar(patient))
    newer = another_pdf("the corrected report")
    staged = depot / ".cr.part"
    staged.write_bytes(newer)
    os.chown(staged, DROP.pw_uid, DROP.pw_gid)
    real = Outbox.move_in

    def move_in(box: Outbox, depot_: Any, name: str, place: str, target: str) -> str:
        if name == "cr.pdf":
            attack = as_drop_account(f"cd {depot} && mv -f .cr.part cr.pdf")
            assert attack.returncode == 0, attack.stderr
        return real(box, depot_, name, place, target)

    monkeypatch.setattr(Outbox, "move_in", move_in)
    outcome = folder.take("cr.pdf", "cr.json")
    assert outcome is not None
    assert outcome.status == "stored"
    assert [hashlib.sha256(original).hexdigest()] == [d.sha256 for d in Document.objects.all()]
    assert (depot / "cr.pdf").read_bytes() == newer
    assert not (outbox / "done" / "cr.pdf").exists()
    assert "replaced after Vigie read it" in (outbox / "done" / "cr.reason.txt").read_text()
