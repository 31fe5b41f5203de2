"""A misconfigured installation stops with one line naming the problem and exit code 2.

The incident began with an installation nobody noticed was wrong; Vigie says so at once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VIGIE, keys_dir

# Bare environments (no DATABASE_URL) or no database at all: the same on both passes.
pytestmark = pytest.mark.sqlite_only


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIGIE, *args], env=env, capture_output=True, text=True, timeout=120)


def _assert_one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vigie: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def production(bare_env: dict[str, str]) -> dict[str, str]:
    env = {**bare_env, "VIGIE_MODE": "production"}
    result = _run(env, "keys", "init")
    assert result.returncode == 0, result.stderr
    return env


def _keyring(env: dict[str, str]) -> Path:
    return keys_dir(Path(env["VIGIE_HOME"])) / "keyring.json"


def test_production_refuses_to_start_without_a_secret_key(bare_env: dict[str, str]) -> None:
    env = {**bare_env, "VIGIE_MODE": "production"}
    _assert_one_line_refusal(_run(env, "migrate"), "no secret key")


def test_production_refuses_to_start_without_a_keyring(production: dict[str, str]) -> None:
    _keyring(production).unlink()
    _assert_one_line_refusal(_run(production, "migrate"), "keyring", "not found")


def test_it_refuses_a_group_readable_keyring(production: dict[str, str]) -> None:
    _keyring(production).chmod(0o640)
    _assert_one_line_refusal(_run(production, "migrate"), "keyring", "chmod 600")


def test_it_refuses_a_world_readable_keyring(production: dict[str, str]) -> None:
    _keyring(production).chmod(0o604)
    _assert_one_line_refusal(_run(production, "migrate"), "keyring", "chmod 600")


@pytest.mark.parametrize("content", ["{not json", '{"format": "other"}', ""])
def test_it_refuses_a_corrupted_keyring(production: dict[str, str], content: str) -> None:
    path = _keyring(production)
    path.write_text(content)
    path.chmod(0o600)
    _assert_one_line_refusal(_run(production, "migrate"), "keyring", "corrupted")


def test_it_refuses_a_keyring_with_a_truncated_key(production: dict[str, str]) -> None:
    path = _keyring(production)
    data = json.loads(path.read_text())
    for key in data["keys"]:
        key["key"] = key["key"][:10]
    path.write_text(json.dumps(data))
    _assert_one_line_refusal(_run(production, "migrate"), "keyring", "corrupted")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgres://nobody:hunter2@127.0.0.1:1/vigie", "cannot reach the database"),
        ("mysql://root@127.0.0.1/vigie", "DATABASE_URL"),
        ("not a url at all", "DATABASE_URL"),
    ],
)
def test_it_refuses_a_wrong_database_url(production: dict[str, str], url: str, needle: str) -> None:
    result = _run({**production, "DATABASE_URL": url}, "migrate")
    _assert_one_line_refusal(result, needle)
    assert "hunter2" not in result.stderr  # never print a password


def test_it_refuses_an_unwritable_vigie_home(bare_env: dict[str, str]) -> None:
    # /proc refuses new folders even to root, for whom permission bits are no obstacle.
    env = {**bare_env, "VIGIE_HOME": "/proc/vigie-home"}
    _assert_one_line_refusal(_run(env, "migrate"), "VIGIE_HOME=/proc/vigie-home", "not writable")


def test_it_refuses_debug_in_production(production: dict[str, str]) -> None:
    _assert_one_line_refusal(_run({**production, "VIGIE_DEBUG": "true"}, "migrate"), "VIGIE_DEBUG")


def test_it_refuses_an_unknown_mode(bare_env: dict[str, str]) -> None:
    _assert_one_line_refusal(_run({**bare_env, "VIGIE_MODE": "prod"}, "migrate"), "VIGIE_MODE")


def test_attack_an_audit_tail_left_unsigned_for_longer_than_a_minute_is_refused(
    production: dict[str, str],
) -> None:
    # Events after the last signed checkpoint can be rewritten with database access alone:
    # an interval set to an hour would leave an hour of them unanchored.
    refused = _run({**production, "VIGIE_AUDIT_CHECKPOINT_SECONDS": "3600"}, "migrate")
    _assert_one_line_refusal(refused, "VIGIE_AUDIT_CHECKPOINT_SECONDS=3600", "maximum of 60")


def test_the_demo_command_refuses_production_mode(production: dict[str, str]) -> None:
    _assert_one_line_refusal(_run(production, "demo", "--no-serve"), "VIGIE_MODE=demo")


def test_production_passes_djangos_deployment_checks(production: dict[str, str]) -> None:
    result = _run(production, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_keys_init_never_overwrites_a_keyring(production: dict[str, str]) -> None:
    before = _keyring(production).read_bytes()
    result = _run(production, "keys", "init")
    assert result.returncode == 0
    assert "nothing to do" in result.stdout
    assert _keyring(production).read_bytes() == before
    assert _keyring(production).stat().st_mode & 0o777 == 0o600


def test_a_half_restored_installation_refuses_to_serve(production: dict[str, str]) -> None:
    # `vigie backup restore` leaves this marker until the restored data has verified.
    (Path(production["VIGIE_HOME"]) / "RESTORING").write_text("restore in progress\n")
    _assert_one_line_refusal(_run(production, "serve"), "RESTORING", "restore again")


# --- the keys never lie beside the data (issue 15) -------------------------------------------


def _move_keys_to(env: dict[str, str], folder: Path) -> dict[str, str]:
    """The installation's keys, moved (as an operator might) to `folder`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    Path(env["VIGIE_KEYS_DIR"]).rename(folder)
    return {**env, "VIGIE_KEYS_DIR": str(folder)}


@pytest.mark.parametrize(
    ("where", "extra", "label"),
    [
        ("home/keys", {}, "inside VIGIE_HOME"),
        ("home/media/keys", {}, "inside the web root (MEDIA_ROOT)"),
        ("blobs/keys", {"VIGIE_BLOB_DIR": "blobs"}, "inside the blob store (VIGIE_BLOB_DIR)"),
        ("static/keys", {"VIGIE_STATIC_ROOT": "static"}, "inside the web root (STATIC_ROOT)"),
    ],
)
def test_it_refuses_to_start_with_the_keys_in_a_data_folder(
    production: dict[str, str], tmp_path: Path, where: str, extra: dict[str, str], label: str
) -> None:
    env = _move_keys_to(production, tmp_path / where)
    env.update({name: str(tmp_path / value) for name, value in extra.items()})
    result = _run(env, "migrate")
    _assert_one_line_refusal(result, "key material", label, "vigie keys move")


def test_it_refuses_keys_reached_through_a_symlink_into_vigie_home(
    production: dict[str, str], tmp_path: Path
) -> None:
    inside = tmp_path / "home" / "keys"
    env = _move_keys_to(production, inside)
    link = tmp_path / "etc" / "vigie-keys"
    link.parent.mkdir()
    link.symlink_to(inside)
    _assert_one_line_refusal(
        _run({**env, "VIGIE_KEYS_DIR": str(link)}, "migrate"), "inside VIGIE_HOME"
    )


def test_it_refuses_keys_in_a_home_reached_through_a_symlink(
    production: dict[str, str], tmp_path: Path
) -> None:
    # VIGIE_HOME is a symlink to the real data folder, and the keys sit in the real one.
    real_home = tmp_path / "data"
    Path(production["VIGIE_HOME"]).rename(real_home)
    Path(production["VIGIE_HOME"]).symlink_to(real_home)
    env = _move_keys_to(production, real_home / "keys")
    _assert_one_line_refusal(_run(env, "migrate"), "inside VIGIE_HOME")


def test_it_refuses_keys_named_with_dot_dot_into_vigie_home(
    production: dict[str, str], tmp_path: Path
) -> None:
    env = _move_keys_to(production, tmp_path / "home" / "keys")
    sneaky = tmp_path / "elsewhere" / ".." / "home" / "keys"
    (tmp_path / "elsewhere").mkdir()
    _assert_one_line_refusal(
        _run({**env, "VIGIE_KEYS_DIR": str(sneaky)}, "migrate"), "inside VIGIE_HOME"
    )


def test_it_refuses_a_secret_key_file_inside_vigie_home(production: dict[str, str]) -> None:
    secret = Path(production["VIGIE_HOME"]) / "secret"
    secret.write_text("s" * 64)
    secret.chmod(0o600)
    result = _run({**production, "VIGIE_SECRET_KEY_FILE": str(secret)}, "migrate")
    _assert_one_line_refusal(result, str(secret), "inside VIGIE_HOME")


def test_it_refuses_keys_left_in_the_old_place_after_an_upgrade(
    production: dict[str, str],
) -> None:
    # The layout before issue 15: VIGIE_HOME/keyring/. The settings now point elsewhere, but a
    # copy left there would still be served with the data.
    old = Path(production["VIGIE_HOME"]) / "keyring"
    old.mkdir(mode=0o700)
    (old / "audit-signing.key").write_bytes(b"left behind")
    result = _run(production, "serve")
    _assert_one_line_refusal(result, str(old / "audit-signing.key"), "vigie keys move")


# `vigie serve` checks without loading Django's applications (issue 19: cold start): the same
# refusals, before granian is ever started (a server that started would time the test out).
_SERVE_BREAKAGES = {
    "no_keyring": (lambda env: _keyring(env).unlink(), {}, ("keyring", "not found")),
    "group_readable_keyring": (lambda env: _keyring(env).chmod(0o640), {}, ("chmod 600",)),
    "unreachable_database": (
        lambda env: None,
        {"DATABASE_URL": "postgres://nobody:hunter2@127.0.0.1:1/vigie"},
        ("cannot reach the database",),
    ),
    "debug_in_production": (lambda env: None, {"VIGIE_DEBUG": "true"}, ("VIGIE_DEBUG",)),
    "unknown_mode": (lambda env: None, {"VIGIE_MODE": "prod"}, ("VIGIE_MODE",)),
}


@pytest.mark.parametrize(
    ("breakage", "overrides", "needles"), _SERVE_BREAKAGES.values(), ids=_SERVE_BREAKAGES
)
def test_serve_refuses_what_every_command_refuses(
    production: dict[str, str], breakage: Any, overrides: dict[str, str], needles: tuple[str, ...]
) -> None:
    breakage(production)
    result = _run({**production, **overrides}, "serve", "--port", "0")
    _assert_one_line_refusal(result, *needles)
    assert "hunter2" not in result.stderr


_PSC = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet/.well-known/openid-configuration"


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        # Half a PSC configuration: the button would only ever fail.
        ({"VIGIE_PSC_DISCOVERY_URL": _PSC}, ("VIGIE_PSC_CLIENT_ID",)),
        (
            {"VIGIE_PSC_DISCOVERY_URL": _PSC, "VIGIE_PSC_CLIENT_ID": "x"},
            ("VIGIE_PSC_CLIENT_SECRET",),
        ),
        # Keys and tokens in clear across the network.
        (
            {
                "VIGIE_PSC_DISCOVERY_URL": "http://psc.example/.well-known/openid-configuration",
                "VIGIE_PSC_CLIENT_ID": "x",
                "VIGIE_PSC_CLIENT_SECRET": "y",
            },
            ("VIGIE_PSC_DISCOVERY_URL", "https://"),
        ),
        (
            {
                "VIGIE_PSC_DISCOVERY_URL": _PSC,
                "VIGIE_PSC_CLIENT_ID": "x",
                "VIGIE_PSC_CLIENT_SECRET_FILE": "/nonexistent/psc",
            },
            ("VIGIE_PSC_CLIENT_SECRET_FILE=/nonexistent/psc", "cannot read"),
        ),
    ],
)
def test_it_refuses_a_half_or_unsafe_psc_configuration(
    production: dict[str, str], extra: dict[str, str], needles: tuple[str, ...]
) -> None:
    _assert_one_line_refusal(_run({**production, **extra}, "migrate"), *needles)
