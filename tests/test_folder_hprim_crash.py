"""Never half a file: `vigie intake folder` killed with SIGKILL while it takes multi-patient
HPRIM files (12 runs).

Each run drops two HPRIM files of three patients each (the sender's way: a temporary name,
then a rename), starts a real `vigie intake folder` process and kills it with SIGKILL, half
the time anywhere from its start; the other half, once it reported its first round, two more
files are dropped and the kill comes 0-250 ms later, so that kills land inside a round of
several files: between sealing its patients, fsyncing their blobs together, committing the
round's one transaction, renaming its files and fsyncing their folders (the window rounds
opened: files stored but not yet moved, renames not yet durable). A final clean pass
finishes the work. Then every file dropped is in done/ with each of
its three patients stored exactly once (one row for that patient's bytes, one sealed result
set, one ReceivedMessage), or still in the folder with none of them stored: never some
patients of a file without the others.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import VIGIE, System, first_line
from vigie.intake.hprim import parse, patient_bytes
from vigie.intake.hprim.testing import Report, hprim, make_nir

pytestmark = pytest.mark.slow

RUNS = 12
FILES_PER_RUN = 2
NIR = make_nir("1700175001003")  # the known patient's, born January 1970


def _file(run: int, n: int) -> bytes:
    """Three patients: the known one (by NIR), then two nobody has here."""
    tag = f"{run:02d}{n}"
    return hprim(
        [
            Report(family_name="CRASH", birth_date="01/01/1970", nir=NIR, reference=f"A{tag}"),
            Report(family_name="DUPONT", nir="", reference=f"B{tag}"),
            Report(family_name="DURAND", nir="", reference=f"C{tag}"),
        ]
    )


def _drop(folder: Path, name: str, content: bytes) -> None:
    temp = folder / f".{name}.part"
    temp.write_bytes(content)
    temp.rename(folder / name)


def _database_view(system: System, hashes: list[str]) -> dict[str, list[int]]:
    """For each sha256: [Document rows, PendingDocument rows, sealed result sets]."""
    code = (
        "import json\n"
        "from vigie.records.models import Document, PendingDocument, SealedResults\n"
        "from vigie.records.models import results_label\n"
        "from vigie.intake.models import ReceivedMessage\n"
        f"hashes = {hashes!r}\n"
        "out = {}\n"
        "for h in hashes:\n"
        "    ids = [*Document.objects.filter(sha256=h).values_list('pk', flat=True),"
        " *PendingDocument.objects.filter(sha256=h).values_list('pk', flat=True)]\n"
        "    out[h] = [Document.objects.filter(sha256=h).count(),"
        " PendingDocument.objects.filter(sha256=h).count(),"
        " SealedResults.objects.filter(pk__in=[results_label(i) for i in ids]).count()]\n"
        "out['received'] = [ReceivedMessage.objects.filter(channel='folder').count(), 0, 0]\n"
        "out['rows'] = [Document.objects.count(), PendingDocument.objects.count(),"
        " SealedResults.objects.count()]\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    result = system.run("shell", "-c", code)
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    view: dict[str, list[int]] = json.loads(line.removeprefix("RESULT "))
    return view


def test_sigkill_during_hprim_intake_stores_every_file_whole_once_or_leaves_it(
    system: System, tmp_path: Path
) -> None:
    system.run(
        "shell",
        "-c",
        "from vigie.records.models import Patient;"
        f"Patient.objects.create(ipp='IPPHPRIM1', ins='{NIR}', family_name='CRASH',"
        " given_names='Test', birth_date='1970-01-01', sex='M')",
    )
    folder = tmp_path / "drop"
    folder.mkdir()
    outbox = tmp_path / "outbox"
    outbox.mkdir(mode=0o700)
    command = [
        *VIGIE, "intake", "folder", str(folder), "--outbox", str(outbox), "--source", "HPRIM-DRILL",
        "--settle", "0.05", "--interval", "0.02",
    ]  # fmt: skip
    rng = random.Random(20261207)
    dropped: dict[str, bytes] = {}
    killed_after_a_file = 0
    for run in range(RUNS):
        for n in range(FILES_PER_RUN):
            name = f"run{run:02d}-{n}.hpr"
            dropped[name] = _file(run, n)
            _drop(folder, name, dropped[name])
        process = system.popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if run % 2 == 1:
            time.sleep(rng.uniform(0.0, 2.5))
        elif first_line(process, time.monotonic() + 60):
            killed_after_a_file += 1
            # A second round while the watcher is warm: taken after the settle time (50 ms),
            # so a kill within 250 ms lands before, inside or after it.
            for n in range(FILES_PER_RUN, 2 * FILES_PER_RUN):
                name = f"run{run:02d}-{n}.hpr"
                dropped[name] = _file(run, n)
                _drop(folder, name, dropped[name])
            time.sleep(rng.uniform(0.0, 0.25))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    system.run(
        "intake", "folder", str(folder), "--outbox", str(outbox), "--source", "HPRIM-DRILL",
        "--once", "--settle", "0.05",
    )  # fmt: skip

    assert killed_after_a_file >= RUNS // 4, "the kills never landed inside the intake loop"
    parts = {
        name: [
            hashlib.sha256(patient_bytes(raw, parsed, patient)).hexdigest()
            for patient in parsed.patients
        ]
        for name, raw in dropped.items()
        for parsed in [parse(raw)]
    }
    view = _database_view(system, sorted({h for hashes in parts.values() for h in hashes}))
    done = outbox / "done"
    stored_files = 0
    for name, content in dropped.items():
        places = [p for p in (done, outbox / "quarantine", folder) if (p / name).exists()]
        assert len(places) == 1, f"{name} is in {places or 'no place'}"
        assert (places[0] / name).read_bytes() == content, f"{name} was altered"
        counts = [view[h] for h in parts[name]]
        if places[0] == done:
            # Patient 1 by its NIR, the others to reconcile; each with its values.
            assert counts == [[1, 0, 1], [0, 1, 1], [0, 1, 1]], f"{name}: {counts}"
            stored_files += 1
        else:
            assert counts == [[0, 0, 0]] * 3, f"{name} partly stored but still in {places[0]}"
    assert view["received"][0] == 3 * stored_files
    assert view["rows"] == [stored_files, 2 * stored_files, 3 * stored_files]
    assert stored_files == len(dropped)


# A watcher that kills itself with SIGKILL at one chosen step of its first round of files:
# the windows a round opens, hit every time rather than by chance.
_KILLED_AT = """
import os, signal, sys
from vigie.startup import restrict_umask
restrict_umask()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
import django
django.setup()
from vigie.intake import folder, folder_hprim
point, after = sys.argv[1], int(sys.argv[2])
seen = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def before(owner, name):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        die()
    setattr(owner, name, wrapper)

def after_calls(owner, name, count):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(name)
        if len(seen) == count:
            die()
        return result
    setattr(owner, name, wrapper)

def after_leaving(count):
    # A file out of the depot under its moving name, not yet under its own (depot.move_in).
    from vigie.intake import depot
    real = os.rename
    def rename(src, dst, **kwargs):
        real(src, dst, **kwargs)
        if str(dst).startswith(depot.MOVING):
            seen.append(dst)
            if len(seen) == count:
                die()
    depot.os.rename = rename

if point == "before_commit":
    before(folder_hprim, "commit_round")
elif point == "between_renames":
    after_leaving(after)
elif point == "before_moves":
    before(folder.HotFolder, "_move_round")
else:
    after_calls(folder.HotFolder, "_move_all", after)
from vigie.cli import main
main(sys.argv[3:])
"""

ROUND = 4


@pytest.mark.parametrize(
    ("point", "after"),
    [
        ("before_commit", 0),  # blobs sealed and fsynced together, no row yet
        ("before_moves", 0),  # the round committed, no file moved
        ("mid_renames", 2),  # half the round's files renamed into done/
        # the second file out of the depot, under its moving name in done/ (the first moved)
        ("between_renames", 2),
        ("before_dir_fsyncs", ROUND),  # every file renamed, done/ and the depot not fsynced
    ],
)
def test_sigkill_at_each_step_of_a_round_loses_no_file_and_stores_none_twice(
    system: System, tmp_path: Path, point: str, after: int
) -> None:
    system.run(
        "shell",
        "-c",
        "from vigie.records.models import Patient;"
        f"Patient.objects.create(ipp='IPPHPRIM1', ins='{NIR}', family_name='CRASH',"
        " given_names='Test', birth_date='1970-01-01', sex='M')",
    )
    folder, outbox = tmp_path / "drop", tmp_path / "outbox"
    folder.mkdir()
    outbox.mkdir(mode=0o700)
    dropped = {f"round-{n}.hpr": _file(99, n) for n in range(ROUND)}
    for name, content in dropped.items():
        _drop(folder, name, content)
    options = [
        "intake", "folder", str(folder), "--outbox", str(outbox), "--source", "HPRIM-DRILL",
        "--settle", "0.05", "--interval", "0.02",
    ]  # fmt: skip
    killed = system.popen(
        [sys.executable, "-c", _KILLED_AT, point, str(after), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _out, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, err
    system.run(*options[:-2], "--once")

    done = outbox / "done"
    assert {p.name for p in folder.iterdir()} == set()
    assert not [p.name for p in done.iterdir() if p.name.startswith(".vigie-moving-")]
    assert {p.name for p in done.glob("*.hpr")} == set(dropped)
    view = _database_view(
        system,
        [
            hashlib.sha256(patient_bytes(raw, parsed, patient)).hexdigest()
            for raw in dropped.values()
            for parsed in [parse(raw)]
            for patient in parsed.patients
        ],
    )
    assert view["rows"] == [ROUND, 2 * ROUND, 3 * ROUND]  # each patient once, with its values
    assert view["received"][0] == 3 * ROUND
    for name, content in dropped.items():
        assert (done / name).read_bytes() == content
    # Stored before the kill, moved after it: the next pass knew them as received.
    # (The command speaks the installation's language, French by default.)
    again = [
        r
        for r in done.glob("*.reason.txt")
        if any(words in r.read_text() for words in ("déjà reçu", "already received"))
    ]
    moved_before = {"before_commit": 0, "before_moves": 0, "between_renames": after - 1}.get(
        point, after
    )
    expected_again = 0 if point == "before_commit" else ROUND - moved_before
    assert len(again) == expected_again
