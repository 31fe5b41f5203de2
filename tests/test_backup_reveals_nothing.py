"""Issue 16, part 5: whoever steals the backup disk reads nothing.

The demo clinic is seeded and doctors sign in over HTTP (live sessions in the database), then
`vigie backup create` runs as it would at night. The thief's search: every byte of DEST, for
each patient's family name, INS and birth date as the database stores them, each TOTP seed
(hex as stored, base32 as enrolled, raw), each session key. A thief with PostgreSQL's tools
also runs `pg_restore` on every file (a custom-format dump is compressed: a raw search alone
would miss it). Nothing may turn up; every file is 0600 and every folder 0700; and the backup
still verifies and restores with the keys export, which is the only thing that opens it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser.live import HttpClient, Installation
from tests.conftest import System, _base_env, keys_dir

pytestmark = pytest.mark.slow

PASSPHRASE = "a backup disk is stolen"
_MARK = "@@VIGIE-SECRETS@@"
# Shorter needles would turn up by chance in megabytes of ciphertext ("Gay" once in 16 MB).
_MIN_NEEDLE = 6

_SECRETS = f"""
import json
from django.contrib.sessions.models import Session
from vigie.accounts.models import SealedTOTPDevice
from vigie.records.models import Patient
patients = [dict(family=p.family_name, given=p.given_names, ins=p.ins,
                 birth=p.birth_date.isoformat()) for p in Patient.objects.all()]
print({_MARK!r} + json.dumps(dict(
    patients=patients,
    # The real seeds: the device table's own key column holds a throwaway value.
    totp=[d.bin_key.hex() for d in SealedTOTPDevice.objects.all()],
    sessions=list(Session.objects.values_list("session_key", flat=True)),
)))
"""


def _needles(found: dict[str, Any]) -> dict[str, bytes]:
    """What the thief looks for, each under a name that says what it is."""
    needles: dict[str, bytes] = {}
    for p in found["patients"]:
        family = p["family"].encode()
        if len(family) >= _MIN_NEEDLE:
            needles[f"family name {p['family']}"] = family
        # A short name as the rows hold it: beside the given names (SQLite's record, or
        # PostgreSQL's COPY text that pg_restore prints).
        needles[f"family name {p['family']} (SQLite row)"] = family + p["given"].encode()
        needles[f"family name {p['family']} (pg_restore)"] = family + b"\t" + p["given"].encode()
        if p["ins"]:
            needles[f"INS {p['ins']}"] = p["ins"].encode()
        needles[f"birth date {p['birth']} of {p['family']}"] = p["birth"].encode()
    for key in found["totp"]:
        raw = bytes.fromhex(key)
        needles[f"TOTP seed {key[:6]}… (hex)"] = key.encode()
        needles[f"TOTP seed {key[:6]}… (base32)"] = base64.b32encode(raw)
        needles[f"TOTP seed {key[:6]}… (raw)"] = raw
    for session_key in found["sessions"]:
        needles[f"session key {session_key[:6]}…"] = session_key.encode()
    return needles


def _readable_forms(path: Path) -> list[bytes]:
    """The file's bytes, and what PostgreSQL's own tool makes of it when it is a dump."""
    forms = [path.read_bytes()]
    tool = shutil.which("pg_restore")
    if tool is not None:
        result = subprocess.run(
            [tool, "--file=-", str(path)], capture_output=True, timeout=120, check=False
        )
        if result.returncode == 0:
            forms.append(result.stdout)
    return forms


def test_attack_a_stolen_backup_disk_reveals_no_patient_seed_or_session(
    tmp_path: Path, postgres_url: str | None
) -> None:
    env = {**_base_env(tmp_path / "home"), "VIGIE_MODE": "demo"}
    if postgres_url:
        env["DATABASE_URL"] = postgres_url
    system = System(home=tmp_path / "home", env=env)
    installation = Installation(root=tmp_path, env=env)
    try:
        installation.seed()
        server = installation.start_server()
        doctors = [user for user in installation.logins if user.role == "doctor"]
        for doctor in doctors[:2]:
            HttpClient(server.base_url).login(installation, doctor)
    finally:
        installation.close()
    found = installation.shell_json(_SECRETS, _MARK)
    assert len(found["patients"]) >= 50
    assert len(found["totp"]) >= 4
    assert len(found["sessions"]) >= 2
    needles = _needles(found)
    # The test's own check: the live database does hold them, so the search can find them.
    if not postgres_url:
        live = (system.home / "vigie.sqlite3").read_bytes()
        assert all(
            needles[f"family name {p['family']} (SQLite row)"] in live for p in found["patients"]
        )
        assert all(key.encode() in live for key in found["sessions"])

    keys = tmp_path / "safe" / "vigie-keys.export"
    keys.parent.mkdir()
    system.run("keys", "export", str(keys), VIGIE_KEYS_PASSPHRASE=PASSPHRASE)
    dest = tmp_path / "backup-disk"
    # As outside systemd (no UMask=0077): the modes must not depend on the umask.
    umask = os.umask(0o022)
    try:
        system.run("backup", "create", str(dest))
    finally:
        os.umask(umask)

    revealed: dict[str, list[str]] = {}
    for path in sorted(dest.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        for content in _readable_forms(path):
            for what, needle in needles.items():
                if needle in content:
                    revealed.setdefault(str(path.relative_to(dest)), []).append(what)
    kinds = sorted({" ".join(what.split()[:2]) for found in revealed.values() for what in found})
    assert revealed == {}, (
        f"found in clear: {kinds}\n" + json.dumps(revealed, indent=1, ensure_ascii=False)[:3000]
    )

    modes = {
        str(path.relative_to(dest)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in [dest, *dest.rglob("*")]
    }
    wrong = {
        name: mode
        for name, mode in modes.items()
        if mode != ("0o700" if (dest / name).is_dir() else "0o600")
    }
    assert wrong == {}, wrong

    verified = system.run(
        "backup",
        "verify",
        str(dest),
        "--keys",
        str(keys),
        check=False,
        VIGIE_KEYS_PASSPHRASE=PASSPHRASE,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "backup OK" in verified.stdout
    assert "WARNING" not in verified.stdout

    # A new machine: its own data folder and its own (empty) keys folder beside it.
    target_env = {
        **env,
        "VIGIE_HOME": str(tmp_path / "restored"),
        "VIGIE_KEYS_DIR": str(keys_dir(tmp_path / "restored")),
    }
    if postgres_url:
        target_env["DATABASE_URL"] = _fresh_database(postgres_url)
    target = System(home=tmp_path / "restored", env=target_env)
    try:
        restored = target.run(
            "backup",
            "restore",
            str(dest),
            "--keys",
            str(keys),
            check=False,
            VIGIE_KEYS_PASSPHRASE=PASSPHRASE,
        )
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "verified: every document decrypts" in restored.stdout
        again = Installation(root=tmp_path, env=target_env).shell_json(_SECRETS, _MARK)
        assert again["patients"] == found["patients"]
        assert sorted(again["totp"]) == sorted(found["totp"])
    finally:
        if postgres_url:
            _drop_database(target_env["DATABASE_URL"])


def _fresh_database(url: str) -> str:
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"vigie_restore_{secrets.token_hex(4)}"
    parts = urlsplit(url)
    with psycopg.connect(urlunsplit((*parts[:2], "/postgres", "", "")), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit((*parts[:2], f"/{name}", "", ""))


def _drop_database(url: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit((*parts[:2], "/postgres", "", "")), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
