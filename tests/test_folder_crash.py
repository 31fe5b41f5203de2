"""Nothing lost, nothing stored twice: `vigie intake folder` killed with SIGKILL (20 runs).

Each run drops a few PDFs with their sidecars (the sender's way: write under a temporary
name, then rename), starts a real `vigie intake folder` process and kills it with SIGKILL at
a random moment: one run in four anywhere from its start, one in four the instant a sidecar
has reached done/ while its PDF has not (the narrowest window), the others 0-100 ms after it
has reported its first file, so that kills land between sealing, committing and moving. A final clean
pass finishes the work. Then every file dropped is in done/ (stored exactly once: one
Document or one PendingDocument for its bytes, one ReceivedMessage), in quarantine/ (stored
never) or still in the folder, with its bytes intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from tests.conftest import VIGIE, System, first_line

pytestmark = pytest.mark.slow

RUNS = 20
FILES_PER_RUN = 3
IPP = "IPPFOLD01"


def _pdf(text: str) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    page.drawString(72, 800, text)
    page.showPage()
    page.save()
    return buffer.getvalue()


def _drop(folder: Path, stem: str, content: bytes, known: bool) -> None:
    sidecar = {
        "patient": {"ipp": IPP if known else "NOBODY01", "family_name": "CRASH"},
        "document": {"kind": "lab_result", "title": stem, "clinical_date": "2026-11-28"},
        "source_system": "CRASH-DRILL",
    }
    for name, data in ((f"{stem}.json", json.dumps(sidecar).encode()), (f"{stem}.pdf", content)):
        temp = folder / f".{name}.part"
        temp.write_bytes(data)
        temp.rename(folder / name)


def _wait_for_half_move(done: Path, deadline: float) -> bool:
    """Poll until a sidecar sits in done/ without its PDF; True if seen before `deadline`."""
    while time.monotonic() < deadline:
        names = {entry.name for entry in os.scandir(done)}
        if any(n.endswith(".json") and n[: -len(".json")] + ".pdf" not in names for n in names):
            return True
    return False


def _database_view(system: System, hashes: list[str]) -> dict[str, list[int]]:
    """For each sha256: [Document rows, PendingDocument rows], plus the ReceivedMessage count."""
    code = (
        "import json\n"
        "from vigie.records.models import Document, PendingDocument\n"
        "from vigie.intake.models import ReceivedMessage\n"
        f"hashes = {hashes!r}\n"
        "out = {h: [Document.objects.filter(sha256=h).count(),"
        " PendingDocument.objects.filter(sha256=h).count()] for h in hashes}\n"
        "out['received'] = [ReceivedMessage.objects.filter(channel='folder').count(), 0]\n"
        "out['documents'] = [Document.objects.count(), PendingDocument.objects.count()]\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    result = system.run("shell", "-c", code)
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    view: dict[str, list[int]] = json.loads(line.removeprefix("RESULT "))
    return view


def test_sigkill_during_folder_intake_stores_every_file_once_or_leaves_it(
    system: System, tmp_path: Path
) -> None:
    system.run(
        "shell",
        "-c",
        "from vigie.records.models import Patient;"
        f"Patient.objects.create(ipp='{IPP}', family_name='CRASH', given_names='Test',"
        " birth_date='1970-01-01')",
    )
    folder = tmp_path / "drop"
    folder.mkdir()
    outbox = tmp_path / "outbox"  # Vigie's own done/ and quarantine/, apart from the drop zone
    outbox.mkdir(mode=0o700)
    command = [
        *VIGIE, "intake", "folder", str(folder), "--outbox", str(outbox), "--source", "CRASH-DRILL",
        "--settle", "0.05", "--interval", "0.02",
    ]  # fmt: skip
    rng = random.Random(20261130)
    dropped: dict[str, bytes] = {}
    killed_after_a_file = 0
    caught_between_moves = 0
    for run in range(RUNS):
        for n in range(FILES_PER_RUN):
            stem = f"run{run:02d}-{n}"
            dropped[stem] = _pdf(f"Crash drill {stem}")
            # One file in five names a patient nobody has here: it must end up pending.
            _drop(folder, stem, dropped[stem], known=(run * FILES_PER_RUN + n) % 5 != 0)
        process = system.popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if run % 4 == 3:
            time.sleep(rng.uniform(0.0, 2.5))  # anywhere from start-up to mid-batch
        elif run % 4 == 1:
            # Aimed at the narrowest window: a sidecar already in done/, its PDF not yet.
            caught_between_moves += _wait_for_half_move(outbox / "done", time.monotonic() + 30)
        elif first_line(process, time.monotonic() + 60):
            # A file has just been taken: the next ones are in flight (sealing,
            # committing, moving, a few milliseconds each).
            killed_after_a_file += 1
            time.sleep(rng.uniform(0.0, 0.1))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    # A clean pass finishes whatever the kills interrupted.
    system.run(
        "intake",
        "folder",
        str(folder),
        "--outbox",
        str(outbox),
        "--source",
        "CRASH-DRILL",
        "--once",
        "--settle",
        "0.05",
    )

    assert killed_after_a_file >= RUNS // 4, "the kills never landed inside the intake loop"
    assert caught_between_moves >= 1, "no kill landed between the two moves"
    done, quarantine = outbox / "done", outbox / "quarantine"
    hashes = {stem: hashlib.sha256(content).hexdigest() for stem, content in dropped.items()}
    view = _database_view(system, sorted(set(hashes.values())))
    stored = 0
    for stem, content in dropped.items():
        places = [p for p in (done, quarantine, folder) if (p / f"{stem}.pdf").exists()]
        assert len(places) == 1, f"{stem}.pdf is in {places or 'no place'}"
        where = places[0]
        assert (where / f"{stem}.pdf").read_bytes() == content, f"{stem}.pdf was altered"
        documents, pending = view[hashes[stem]]
        if where == done:
            assert (documents, pending) in ((1, 0), (0, 1)), f"{stem}: {documents}+{pending}"
            assert (done / f"{stem}.json").exists(), f"{stem}.json left behind"
            stored += 1
        else:
            assert (documents, pending) == (0, 0), f"{stem} stored but still in {where}"
    # Every received file has exactly one ReceivedMessage, and nothing else was stored.
    assert view["received"][0] == stored
    assert sum(view["documents"]) == stored
    # The final clean pass left nothing in the folder itself.
    assert stored == len(dropped)
