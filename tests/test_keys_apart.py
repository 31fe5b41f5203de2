"""The keys never lie beside the data (issue 15, part 3), with real `vigie` processes.

`vigie keys move` takes an installation of the old layout (keys in VIGIE_HOME/keyring/) out of
the data tree, verified and safe to run again; keys from systemd credentials
($CREDENTIALS_DIRECTORY, what LoadCredentialEncrypted= provides) are read and reported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import System

pytestmark = pytest.mark.slow

KEY_FILES = ("keyring.json", "secret_key", "audit-signing.key")
# A document whose content the test knows, so a read proves the moved keys decrypt it.
INGEST = (
    "import io, datetime;"
    "from vigie.records.models import Patient; from vigie.records.ingest import ingest, DocumentMeta;"
    "p=Patient.objects.create(ipp='IPPKEYS1', family_name='KEYS', given_names='Test',"
    " birth_date='1970-01-01');"
    "ingest(p, DocumentMeta(kind='other', title='moved', clinical_date=datetime.date(2026,1,1),"
    " source_system='T'), io.BytesIO(b'%PDF keys apart ' * 100))"
)
READ_ALL = (
    "from vigie.records.models import Document; from vigie.records.content import verify;"
    "[verify(d) for d in Document.objects.all()]; print('READ', Document.objects.count())"
)


@pytest.fixture
def old_layout(system: System) -> System:
    """An installation with one document, its keys where releases before issue 15 put them."""
    system.run("shell", "-c", INGEST)
    keys = Path(system.env["VIGIE_KEYS_DIR"])
    shutil.move(keys, system.home / "keyring")
    return system


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_it_refuses_to_start_until_the_keys_are_moved_then_reads_with_them(
    old_layout: System, tmp_path: Path
) -> None:
    system = old_layout
    before = _tree(system.home / "keyring")
    refused = system.run("shell", "-c", READ_ALL, check=False)
    assert refused.returncode == 2
    assert "vigie keys move" in refused.stderr

    dest = tmp_path / "etc" / "vigie" / "keys"
    moved = system.run("keys", "move", str(dest))
    assert "verified the keyring" in moved.stdout
    assert "decrypts document" in moved.stdout
    assert f"set VIGIE_KEYS_DIR={dest}" in moved.stdout
    # Moved whole, private, and gone from the data tree (the old folder with them).
    assert _tree(dest) == before
    assert dest.stat().st_mode & 0o777 == 0o700
    assert dest.parent.stat().st_mode & 0o777 == 0o755  # /etc/vigie stays traversable
    for name in KEY_FILES:
        assert (dest / name).stat().st_mode & 0o777 == 0o600
    assert not (system.home / "keyring").exists()

    assert "READ 1" in system.run("shell", "-c", READ_ALL, VIGIE_KEYS_DIR=str(dest)).stdout
    # The move is recorded with the document it decrypted to verify.
    events = system.run(
        "shell",
        "-c",
        "from vigie.audit.models import AuditEvent; import json;"
        "print(json.dumps([e.extra for e in AuditEvent.objects.filter(action='keys.move')]))",
        VIGIE_KEYS_DIR=str(dest),
    ).stdout
    assert json.loads(events.strip().splitlines()[-1])[0]["to"] == str(dest)
    # Again: nothing to do, nothing changed.
    again = system.run("keys", "move", str(dest), VIGIE_KEYS_DIR=str(dest))
    assert "nothing to do" in again.stdout
    assert _tree(dest) == before


def test_an_interrupted_move_finishes_when_run_again(old_layout: System, tmp_path: Path) -> None:
    # As a crash leaves it after the copies and one removal: both places hold keys.
    system = old_layout
    source = system.home / "keyring"
    dest = tmp_path / "keys"
    shutil.copytree(source, dest)
    (source / "secret_key").unlink()
    (dest / "keyring.json").unlink()  # and one copy never made it
    moved = system.run("keys", "move", str(dest))
    assert "copied" in moved.stdout
    assert "keyring.json" in moved.stdout
    assert not source.exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted(KEY_FILES)
    assert "READ 1" in system.run("shell", "-c", READ_ALL, VIGIE_KEYS_DIR=str(dest)).stdout


def test_it_refuses_to_replace_a_different_key_and_removes_nothing(
    old_layout: System, tmp_path: Path
) -> None:
    system = old_layout
    source = system.home / "keyring"
    before = _tree(source)
    dest = tmp_path / "keys"
    dest.mkdir(mode=0o700)
    (dest / "audit-signing.key").write_bytes(b"another installation's key")
    result = system.run("keys", "move", str(dest), check=False)
    assert result.returncode == 2
    assert "differs" in result.stderr
    assert "nothing was removed" in result.stderr
    assert _tree(source) == before


def test_it_refuses_a_keyring_that_does_not_decrypt_and_removes_nothing(
    old_layout: System, tmp_path: Path
) -> None:
    system = old_layout
    source = system.home / "keyring"
    dest = tmp_path / "keys"
    # Another installation's keyring copied over this one's by mistake: it loads, but it
    # cannot open this installation's documents.
    (source / "keyring.json").unlink()
    stranger = tmp_path / "stranger"
    system.run(
        "keys", "init", VIGIE_HOME=str(stranger / "home"), VIGIE_KEYS_DIR=str(stranger / "keys")
    )
    shutil.copy(stranger / "keys" / "keyring.json", source / "keyring.json")
    (source / "keyring.json").chmod(0o600)
    before = _tree(source)
    result = system.run("keys", "move", str(dest), check=False)
    assert result.returncode == 2
    assert "does not decrypt" in result.stderr
    assert "nothing was removed" in result.stderr
    assert _tree(source) == before


@pytest.mark.parametrize("inside", ["home/keys2", "home/blobs/keys"])
def test_it_refuses_a_destination_inside_the_data_tree(
    old_layout: System, inside: str, tmp_path: Path
) -> None:
    system = old_layout
    dest = tmp_path / inside
    result = system.run("keys", "move", str(dest), check=False)
    assert result.returncode == 2
    assert "inside" in result.stderr
    assert "data tree" in result.stderr
    assert not dest.exists()
    assert (system.home / "keyring" / "keyring.json").is_file()


def _credentials(system: System, tmp_path: Path) -> Path:
    """What systemd makes of LoadCredentialEncrypted=: a private, read-only copy of each key."""
    folder = tmp_path / "run-credentials-vigie-web"
    folder.mkdir()
    for name in KEY_FILES:
        shutil.copy(Path(system.env["VIGIE_KEYS_DIR"]) / name, folder / name)
        (folder / name).chmod(0o400)
    folder.chmod(0o500)
    return folder


def test_it_reads_the_keys_from_systemd_credentials_and_says_so(
    system: System, tmp_path: Path
) -> None:
    system.run("shell", "-c", INGEST)
    credentials = _credentials(system, tmp_path)
    # The keys folder is gone: only the credentials can open the document.
    shutil.rmtree(system.env["VIGIE_KEYS_DIR"])
    assert (
        "READ 1"
        in system.run("shell", "-c", READ_ALL, CREDENTIALS_DIRECTORY=str(credentials)).stdout
    )
    report = json.loads(
        system.run("check", "--json", check=False, CREDENTIALS_DIRECTORY=str(credentials)).stdout
    )
    found = {f["id"]: f for f in report["findings"]}
    assert found["keyring.location"]["status"] == "ok"
    assert f"systemd credentials {credentials}" in found["keyring.location"]["message"]
    assert found["keyring"]["status"] == "ok"
    # Rotation writes the keyring: refused clearly, the credentials are systemd's.
    rotate = system.run("keys", "rotate", check=False, CREDENTIALS_DIRECTORY=str(credentials))
    assert rotate.returncode == 2
    assert "systemd-creds encrypt" in rotate.stderr


def test_a_credentials_directory_without_keys_leaves_the_keys_folder_in_use(
    system: System, tmp_path: Path
) -> None:
    other = tmp_path / "credentials-of-something-else"
    other.mkdir()
    (other / "tls.pem").write_text("not a key of Vigie's")
    report = json.loads(
        system.run("check", "--json", check=False, CREDENTIALS_DIRECTORY=str(other)).stdout
    )
    found = {f["id"]: f for f in report["findings"]}
    assert f"keys directory {system.env['VIGIE_KEYS_DIR']}" in found["keyring.location"]["message"]
