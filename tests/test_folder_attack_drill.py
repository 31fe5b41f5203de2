"""The hot folder's attack, end to end: a real `vigie intake folder` against a real drop account.

The lab's drop account (the unprivileged user `nobody`, through setuid shell processes) takes
over `quarantine/` in the depot as it could before, plants links to the installation's real
keyring where Vigie used to write its reason file, and drops a PDF that is a link to the
keyring. A real watcher process then takes the folder. Afterwards the keyring is unchanged,
nothing was stored, and everything refused is in Vigie's own outbox with its reason. Then
quarantine/ is replaced under a running watcher: it stops with a critical alert, leaving the
new file where it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VIGIE, System, keys_dir

DROP = pwd.getpwnam("nobody")
SIDECAR = {
    "patient": {"ipp": "IPPDRILL1", "family_name": "DRILL"},
    "document": {"kind": "lab_result", "title": "Drill", "clinical_date": "2026-11-28"},
    "source_system": "DRILL",
}


@pytest.fixture
def depot() -> Iterator[Path]:
    # Under /tmp itself so that the drop account can reach it; laid out as in production.
    path = Path(tempfile.mkdtemp(prefix="vigie-depot-"))
    os.chown(path, os.geteuid(), DROP.pw_gid)
    path.chmod(0o2770)
    yield path
    shutil.rmtree(path)


def as_drop_account(script: str) -> None:
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        user=DROP.pw_uid,
        group=DROP.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def drop(depot: Path, stem: str, content: bytes) -> None:
    for name, data in ((f"{stem}.json", json.dumps(SIDECAR).encode()), (f"{stem}.pdf", content)):
        (depot / name).write_bytes(data)
        os.chown(depot / name, DROP.pw_uid, DROP.pw_gid)


def _count(system: System, code: str) -> str:
    result = system.run("shell", "-c", f"print('RESULT', {code})")
    return next(x for x in result.stdout.splitlines() if x.startswith("RESULT ")).split(" ", 1)[1]


def test_attack_a_drop_account_cannot_make_a_real_watcher_touch_the_keyring(
    system: System, depot: Path, tmp_path: Path
) -> None:
    keyring = keys_dir(system.home) / "keyring.json"
    before = hashlib.sha256(keyring.read_bytes()).hexdigest()
    outbox = tmp_path / "outbox"
    outbox.mkdir(mode=0o700)
    drop(depot, "bad", b"")
    drop(depot, "leak", b"placeholder")
    as_drop_account(
        f"cd {depot} && mkdir quarantine done && "
        f"ln -s {keyring} quarantine/.bad.reason.tmp && ln -s {keyring} quarantine/bad.reason.txt && "
        f"rm leak.pdf && ln -s {keyring} leak.pdf"
    )

    system.run(
        "intake",
        "folder",
        str(depot),
        "--outbox",
        str(outbox),
        "--source",
        "LABO-CENTRAL",
        "--once",
        "--settle",
        "0.05",
    )

    assert hashlib.sha256(keyring.read_bytes()).hexdigest() == before
    quarantine = outbox / "quarantine"
    assert {"bad.pdf", "bad.json", "bad.reason.txt", "leak.json", "leak.reason.txt"} <= {
        p.name for p in quarantine.iterdir()
    }
    # The reason quotes the link (the watcher speaks French by default), the link is gone.
    assert repr(str(keyring)) in (quarantine / "leak.reason.txt").read_text()
    assert not any(p.is_symlink() for p in quarantine.iterdir())
    assert sorted(p.name for p in (depot / "quarantine").iterdir()) == [
        ".bad.reason.tmp",
        "bad.reason.txt",
    ]
    assert _count(system, "__import__('vigie.records.models').records.models.Document"
                  ".objects.count()") == "0"  # fmt: skip

    # Under a running watcher, quarantine/ is swapped for another folder: it stops, loudly.
    watcher = system.popen(
        [*VIGIE, "intake", "folder", str(depot), "--outbox", str(outbox), "--source", "LABO-CENTRAL", "--settle", "0.05",
         "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # Once it has refused a first file, it is in its loop with quarantine/ open.
        drop(depot, "first", b"")
        deadline = time.monotonic() + 120
        while not (quarantine / "first.reason.txt").exists():
            assert watcher.poll() is None, watcher.communicate()
            assert time.monotonic() < deadline, "the watcher never took its first file"
            time.sleep(0.05)
        quarantine.rename(outbox / "quarantine.old")
        quarantine.mkdir(mode=0o700)
        drop(depot, "after", b"")
        _out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 2
    assert str(quarantine) in err
    assert {"after.pdf", "after.json"} <= {p.name for p in depot.iterdir()}
    assert list(quarantine.iterdir()) == []
    alerts = _count(
        system,
        "list(__import__('vigie.alerts.models').alerts.models.Alert.objects"
        ".filter(kind='intake.folder_tampered').values_list('severity', flat=True))",
    )
    assert alerts == "['critical']"
