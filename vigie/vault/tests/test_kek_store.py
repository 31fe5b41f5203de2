"""The keyring file: private, checked on load, rotated without ever losing a key."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from vigie.vault.envelope import new_data_key
from vigie.vault.errors import IntegrityError, KeyringError
from vigie.vault.kek_store import Keyring, get_keyring

DOC = "doc-0123456789abcdef"
OTHER_DOC = "doc-fedcba9876543210"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rewrite(path: Path, document: object) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")
    path.chmod(0o600)


def test_it_creates_a_private_keyring_with_one_active_key(keyring_path: Path) -> None:
    ring = Keyring.create(keyring_path)
    assert mode_of(keyring_path) == 0o600
    assert mode_of(keyring_path.parent) == 0o700
    assert ring.key_ids == [ring.active_id]
    assert re.fullmatch(r"k-\d{8}-\d{6}-[0-9a-f]{6}", ring.active_id)
    document = json.loads(keyring_path.read_text(encoding="utf-8"))
    assert document["format"] == "vigie-keyring-1"
    assert len(base64.b64decode(document["keys"][0]["key"])) == 32


def test_it_creates_a_private_keyring_whatever_the_umask(keyring_path: Path) -> None:
    previous = os.umask(0)
    try:
        Keyring.create(keyring_path)
    finally:
        os.umask(previous)
    assert mode_of(keyring_path) == 0o600
    assert mode_of(keyring_path.parent) == 0o700


def test_it_tightens_an_existing_folder_before_putting_keys_in_it(keyring_path: Path) -> None:
    keyring_path.parent.mkdir(mode=0o755)
    keyring_path.parent.chmod(0o755)
    Keyring.create(keyring_path)
    assert mode_of(keyring_path.parent) == 0o700


def test_it_refuses_to_create_over_an_existing_keyring(keyring: Keyring) -> None:
    before = keyring.path.read_bytes()
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.create(keyring.path)
    assert keyring.path.read_bytes() == before


def test_it_loads_what_it_created(keyring: Keyring) -> None:
    loaded = Keyring.load(keyring.path)
    assert loaded.active_id == keyring.active_id
    data_key = new_data_key()
    assert loaded.unwrap(*keyring.wrap(data_key, DOC), DOC) == data_key


def test_it_refuses_a_missing_keyring(keyring_path: Path) -> None:
    with pytest.raises(KeyringError, match=re.escape(f"keyring not found: {keyring_path}")):
        Keyring.load(keyring_path)


@pytest.mark.parametrize(
    ("mode", "words"),
    [(0o640, "readable"), (0o604, "readable"), (0o644, "readable"), (0o620, "writable")],
)
def test_it_refuses_a_keyring_others_can_access(keyring: Keyring, mode: int, words: str) -> None:
    keyring.path.chmod(mode)
    expected = (
        f"keyring {keyring.path} is {words} by group/others (mode {mode:04o}); "
        f"run chmod 600 {keyring.path}"
    )
    with pytest.raises(KeyringError, match=re.escape(expected)):
        Keyring.load(keyring.path)


def test_it_refuses_a_keyring_that_is_not_a_file(keyring_path: Path) -> None:
    keyring_path.mkdir(parents=True)
    with pytest.raises(KeyringError, match="not a regular file"):
        Keyring.load(keyring_path)


def test_it_does_not_hang_on_a_fifo_planted_as_keyring(keyring_path: Path) -> None:
    keyring_path.parent.mkdir()
    os.mkfifo(keyring_path, 0o600)
    with pytest.raises(KeyringError, match="not a regular file"):
        Keyring.load(keyring_path)


def _load_as_unprivileged_user(path: Path) -> int:
    """Load the keyring in a child that dropped to `nobody`: 0 refused, 1 loaded, 2 other."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        code = 2
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            Keyring.load(path)
            code = 1
        except KeyringError as exc:
            code = 0 if "cannot be opened" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_it_refuses_an_unreadable_keyring() -> None:
    # Root reads any file, so the check runs as an unprivileged user, like the service user,
    # in a folder that user may traverse: only the file's own mode stands in the way.
    folder = Path(tempfile.mkdtemp(prefix="vigie-unreadable-"))
    try:
        folder.chmod(0o711)
        ring = Keyring.create(folder / "keyring" / "keyring.json")
        ring.path.parent.chmod(0o711)
        ring.path.chmod(0o000)
        assert _load_as_unprivileged_user(ring.path) == 0
    finally:
        shutil.rmtree(folder)


def _valid(keyring: Keyring) -> dict[str, object]:
    document = json.loads(keyring.path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: b"\xff\xfe", "not valid JSON"),
        (lambda d: [], "top level must be an object"),
        (lambda d: {**d, "format": "vigie-keyring-9"}, "format is 'vigie-keyring-9'"),
        (lambda d: {**d, "keys": []}, "non-empty list"),
        (lambda d: {**d, "keys": "nope"}, "non-empty list"),
        (lambda d: {**d, "active": "k-missing"}, "active key 'k-missing' is not among the keys"),
        (lambda d: {**d, "keys": [{**d["keys"][0], "key": "%%%not base64"}]}, "not valid base64"),
        (
            lambda d: {
                **d,
                "keys": [{**d["keys"][0], "key": base64.b64encode(b"x" * 16).decode()}],
            },
            "16 bytes, expected 32",
        ),
        (lambda d: {**d, "keys": [d["keys"][0], d["keys"][0]]}, "appears twice"),
        (lambda d: {**d, "keys": [{**d["keys"][0], "id": "../x"}]}, "invalid key id"),
        (lambda d: {**d, "keys": [{**d["keys"][0], "created": "yesterday"}]}, "'created' date"),
        (lambda d: {**d, "keys": [{**d["keys"][0], "key": None}]}, "no 'key' value"),
    ],
)
def test_it_refuses_a_corrupted_keyring(keyring: Keyring, change, reason: str) -> None:
    changed = change(_valid(keyring))
    if isinstance(changed, bytes):
        keyring.path.write_bytes(changed)
    elif isinstance(changed, str):
        keyring.path.write_text(changed, encoding="utf-8")
    else:
        rewrite(keyring.path, changed)
    with pytest.raises(
        KeyringError, match=re.escape(f"keyring {keyring.path} is corrupted: ")
    ) as e:
        Keyring.load(keyring.path)
    assert reason in str(e.value)
    assert "\n" not in str(e.value)


def test_it_wraps_and_unwraps_a_data_key(keyring: Keyring) -> None:
    data_key = new_data_key()
    kek_id, wrapped = keyring.wrap(data_key, DOC)
    assert kek_id == keyring.active_id
    assert data_key not in wrapped
    assert keyring.unwrap(kek_id, wrapped, DOC) == data_key


def test_it_wraps_the_same_key_differently_each_time(keyring: Keyring) -> None:
    data_key = new_data_key()
    assert keyring.wrap(data_key, DOC)[1] != keyring.wrap(data_key, DOC)[1]


def test_it_detects_a_wrapped_key_copied_to_another_document(keyring: Keyring) -> None:
    kek_id, wrapped = keyring.wrap(new_data_key(), DOC)
    with pytest.raises(IntegrityError, match=f"document {OTHER_DOC}"):
        keyring.unwrap(kek_id, wrapped, OTHER_DOC)


def test_it_detects_a_tampered_wrapped_key(keyring: Keyring) -> None:
    kek_id, wrapped = keyring.wrap(new_data_key(), DOC)
    for position in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[position] ^= 0x80
        with pytest.raises(IntegrityError):
            keyring.unwrap(kek_id, bytes(tampered), DOC)
    for cut in (wrapped[:-1], wrapped + b"\x00", b""):
        with pytest.raises(IntegrityError, match="malformed"):
            keyring.unwrap(kek_id, cut, DOC)


def test_it_detects_a_wrapped_key_relabelled_with_another_key_id(keyring: Keyring) -> None:
    _, wrapped = keyring.wrap(new_data_key(), DOC)
    new_id = keyring.add_key()
    with pytest.raises(IntegrityError, match=new_id):
        keyring.unwrap(new_id, wrapped, DOC)


def test_it_detects_unwrapping_with_a_wrong_kek(keyring_path: Path, tmp_path: Path) -> None:
    ring = Keyring.create(keyring_path)
    other = Keyring.create(tmp_path / "other" / "keyring.json")
    kek_id, wrapped = ring.wrap(new_data_key(), DOC)
    # Same id, different key material: a keyring restored from the wrong backup.
    document = json.loads(other.path.read_text(encoding="utf-8"))
    document["keys"][0]["id"] = document["active"] = kek_id
    rewrite(other.path, document)
    other.reload()
    with pytest.raises(IntegrityError):
        other.unwrap(kek_id, wrapped, DOC)


def test_it_keeps_old_keys_working_after_rotation(keyring: Keyring) -> None:
    data_key = new_data_key()
    old_id, wrapped = keyring.wrap(data_key, DOC)
    new_id = keyring.add_key()
    assert keyring.active_id == new_id != old_id
    assert keyring.key_ids == [old_id, new_id]
    assert keyring.unwrap(old_id, wrapped, DOC) == data_key
    assert keyring.wrap(data_key, DOC)[0] == new_id
    assert Keyring.load(keyring.path).key_ids == [old_id, new_id]


def test_it_keeps_the_keyring_private_and_tidy_after_rotation(keyring: Keyring) -> None:
    keyring.add_key()
    keyring.add_key()
    assert mode_of(keyring.path) == 0o600
    leftovers = [p.name for p in keyring.path.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_it_refuses_to_remove_the_active_key(keyring: Keyring) -> None:
    with pytest.raises(KeyringError, match="active key"):
        keyring.remove_key(keyring.active_id)
    assert len(keyring.key_ids) == 1


def test_it_removes_an_old_key(keyring: Keyring) -> None:
    old_id, wrapped = keyring.wrap(new_data_key(), DOC)
    keyring.add_key()
    keyring.remove_key(old_id)
    assert old_id not in keyring.key_ids
    assert old_id not in Keyring.load(keyring.path).key_ids
    with pytest.raises(KeyringError, match=f"unknown key id '{old_id}'"):
        keyring.unwrap(old_id, wrapped, DOC)


def test_it_refuses_to_remove_an_unknown_key(keyring: Keyring) -> None:
    with pytest.raises(KeyringError, match="unknown key id"):
        keyring.remove_key("k-nope")


def test_it_reloads_when_asked_for_a_key_another_process_added(keyring: Keyring) -> None:
    other_process = Keyring.load(keyring.path)
    new_id = other_process.add_key()
    data_key = new_data_key()
    kek_id, wrapped = other_process.wrap(data_key, DOC)
    assert kek_id == new_id
    assert keyring.unwrap(kek_id, wrapped, DOC) == data_key


def test_it_wraps_with_the_key_another_process_made_active(keyring: Keyring) -> None:
    # Wrapping with a stale active key would break once the other process removes it.
    other_process = Keyring.load(keyring.path)
    old_id = keyring.active_id
    new_id = other_process.add_key()
    assert keyring.wrap(new_data_key(), DOC)[0] == new_id
    other_process.remove_key(old_id)
    assert keyring.key_ids == [new_id]


def test_it_never_drops_a_key_added_by_another_process(keyring: Keyring) -> None:
    stale = Keyring.load(keyring.path)
    added_elsewhere = keyring.add_key()
    added_here = stale.add_key()
    assert set(Keyring.load(keyring.path).key_ids) >= {added_elsewhere, added_here}


def test_it_stops_wrapping_when_the_keyring_file_disappears(keyring: Keyring) -> None:
    keyring.path.unlink()
    with pytest.raises(KeyringError, match="keyring not found"):
        keyring.wrap(new_data_key(), DOC)


def test_it_does_not_show_key_material_in_its_repr(keyring: Keyring) -> None:
    secret = _valid(keyring)["keys"][0]["key"]  # type: ignore[index]
    assert secret not in repr(keyring)
    assert secret not in repr(keyring._state)


def test_it_shares_one_keyring_per_path(settings, tmp_path: Path) -> None:
    first_path = tmp_path / "one" / "keyring.json"
    second_path = tmp_path / "two" / "keyring.json"
    Keyring.create(first_path)
    Keyring.create(second_path)
    settings.VIGIE_KEYRING_FILE = first_path
    assert get_keyring() is get_keyring()
    assert get_keyring().path == first_path
    settings.VIGIE_KEYRING_FILE = second_path
    assert get_keyring().path == second_path


def test_it_refuses_a_missing_keyring_from_settings(settings, tmp_path: Path) -> None:
    settings.VIGIE_KEYRING_FILE = tmp_path / "absent" / "keyring.json"
    with pytest.raises(KeyringError, match="keyring not found"):
        get_keyring()
