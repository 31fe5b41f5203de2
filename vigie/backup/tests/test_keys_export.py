"""The keys export: only the passphrase opens it, and nothing in it can be edited unseen."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from django.conf import settings

from vigie.backup import keys as key_export
from vigie.backup.keys import KeyBundle, KeysExportError, export_bundle, read_bundle
from vigie.vault.kek_store import Keyring

PASSPHRASE = "cheval agrafe batterie correcte"


@pytest.fixture
def bundle(backup_home: Path) -> KeyBundle:
    return key_export.collect()


def test_an_export_opens_with_its_passphrase_and_holds_every_key(bundle, tmp_path) -> None:
    path = tmp_path / "keys.vkx"
    export_bundle(bundle, path, PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = read_bundle(path, PASSPHRASE)
    assert again == bundle
    live = Keyring.load(Path(settings.VIGIE_KEYRING_FILE))
    assert again.open_keyring(path).key_ids == live.key_ids
    assert again.public_key().public_bytes_raw() == bundle.public_key().public_bytes_raw()


def test_the_export_holds_no_key_in_clear(bundle, tmp_path) -> None:
    path = tmp_path / "keys.vkx"
    export_bundle(bundle, path, PASSPHRASE)
    content = path.read_bytes()
    keyring = json.loads(bundle.keyring)
    for key in keyring["keys"]:
        assert key["key"].encode() not in content
    assert b"PRIVATE KEY" not in content


def test_a_wrong_passphrase_is_refused_by_name(bundle, tmp_path) -> None:
    path = tmp_path / "keys.vkx"
    export_bundle(bundle, path, PASSPHRASE)
    with pytest.raises(KeysExportError, match="wrong passphrase"):
        read_bundle(path, PASSPHRASE + "!")


def test_weakening_the_key_derivation_in_the_header_is_detected(bundle, tmp_path) -> None:
    # An attacker lowering the Argon2 cost to speed up guessing breaks the authentication.
    path = tmp_path / "keys.vkx"
    export_bundle(bundle, path, PASSPHRASE)
    document = json.loads(path.read_text())
    document["kdf"]["time_cost"] = 1
    path.write_text(json.dumps(document))
    with pytest.raises(KeysExportError, match="wrong passphrase, or the file was altered"):
        read_bundle(path, PASSPHRASE)


def test_an_absurd_memory_cost_is_refused_before_any_work(bundle, tmp_path) -> None:
    path = tmp_path / "keys.vkx"
    export_bundle(bundle, path, PASSPHRASE)
    document = json.loads(path.read_text())
    document["kdf"]["memory_kib"] = 64 * 1024 * 1024  # 64 GiB
    path.write_text(json.dumps(document))
    with pytest.raises(KeysExportError, match="out of bounds"):
        read_bundle(path, PASSPHRASE)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not JSON"),
        (b"{}", "not a Vigie keys export"),
        (b'{"format": "vigie-keys-export-1", "kdf": "x"}', "bad 'kdf'"),
    ],
)
def test_a_file_that_is_not_an_export_is_named_so(tmp_path, content, message) -> None:
    path = tmp_path / "keys.vkx"
    path.write_bytes(content)
    with pytest.raises(KeysExportError, match=message):
        read_bundle(path, PASSPHRASE)


def test_an_existing_file_is_never_overwritten(bundle, tmp_path) -> None:
    path = tmp_path / "keys.vkx"
    path.write_text("someone else's file")
    with pytest.raises(KeysExportError, match="refusing to overwrite"):
        export_bundle(bundle, path, PASSPHRASE)
    assert path.read_text() == "someone else's file"


def test_a_short_passphrase_is_refused_when_exporting(monkeypatch) -> None:
    monkeypatch.setenv(key_export.PASSPHRASE_ENV, "court")
    with pytest.raises(KeysExportError, match="too short"):
        key_export.passphrase_from_env_or_prompt(confirm=True)


def test_installing_keys_never_replaces_an_existing_keyring(bundle) -> None:
    before = Path(settings.VIGIE_KEYRING_FILE).read_bytes()
    with pytest.raises(KeysExportError, match="refusing to replace"):
        key_export.install(bundle)
    assert Path(settings.VIGIE_KEYRING_FILE).read_bytes() == before
