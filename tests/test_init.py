"""`vigie init --production`, run as an operator would: a real `vigie` process.

It creates VIGIE_HOME and the keys with safe permissions and a policy file the guard accepts,
never overwrites anything, refuses the wrong mode, and ends with the next steps.
"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VIGIE, _base_env, keys_dir
from vigie.guard.policy import load_policy

# Bare environments (no DATABASE_URL) or no database at all: the same on both passes.
pytestmark = pytest.mark.sqlite_only

REPO = Path(__file__).resolve().parent.parent


def _init(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIGIE, "init", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def production(bare_env: dict[str, str]) -> dict[str, str]:
    return {**bare_env, "VIGIE_MODE": "production"}


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """One fresh `vigie init --production`, shared by the tests that only look at it."""
    env = {**_base_env(tmp_path_factory.mktemp("init") / "home"), "VIGIE_MODE": "production"}
    return env, _init(env, "--production")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(home: Path) -> dict[str, Path]:
    keyring = keys_dir(home)
    return {
        "secret key": keyring / "secret_key",
        "keyring": keyring / "keyring.json",
        "audit signing key": keyring / "audit-signing.key",
        "policy": home / "vigie-policy.toml",
    }


def _snapshot(home: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(path): (
            path.stat().st_mode,
            path.stat().st_mtime_ns,
            path.read_bytes(),
        )
        for folder in (home, keys_dir(home))
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_it_creates_the_keys_and_the_policy_private(
    first_run: tuple[dict[str, str], subprocess.CompletedProcess[str]],
) -> None:
    env, result = first_run
    home = Path(env["VIGIE_HOME"])
    assert result.returncode == 0, result.stderr
    assert _mode(home) == 0o700
    assert _mode(keys_dir(home)) == 0o700
    # The keys apart from the data: serving or copying VIGIE_HOME yields none of them.
    assert not keys_dir(home).resolve().is_relative_to(home.resolve())
    assert sorted(p.name for p in home.rglob("*")) == ["vigie-policy.toml"]
    for what, path in _files(home).items():
        assert path.is_file(), what
        assert _mode(path) == 0o600, what
        # Each created path is printed with its mode.
        assert f"created  {path}  (0600)" in result.stdout, what
    assert f"created  {home}  (0700)" in result.stdout
    assert f"created  {keys_dir(home)}  (0700)" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_policy_file_is_the_commented_template_and_the_guard_accepts_it(
    first_run: tuple[dict[str, str], subprocess.CompletedProcess[str]],
) -> None:
    production, result = first_run
    home = Path(production["VIGIE_HOME"])
    assert result.returncode == 0, result.stderr
    policy_file = home / "vigie-policy.toml"
    text = policy_file.read_text(encoding="utf-8")
    assert text == (REPO / "deploy" / "vigie-policy.example.toml").read_text(encoding="utf-8")
    assert text.count("\n#") >= 5  # commented, for the operator who edits it
    policy = load_policy(policy_file)
    assert {listener.name for listener in policy.listeners} >= {"portal", "mllp"}
    # And the guard's own check says so, in the installation just made.
    check = subprocess.run(
        [*VIGIE, "guard", "check-policy"],
        env=production,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "table inet vigie" in check.stdout


def test_the_packaged_template_is_the_deploy_example() -> None:
    packaged = REPO / "vigie" / "guard" / "policy-template.toml"
    example = REPO / "deploy" / "vigie-policy.example.toml"
    assert packaged.read_bytes() == example.read_bytes()


def test_a_second_run_changes_nothing_and_says_so(production: dict[str, str]) -> None:
    home = Path(production["VIGIE_HOME"])
    assert _init(production, "--production").returncode == 0
    # An operator's edits to the policy are theirs: never overwritten either.
    policy_file = home / "vigie-policy.toml"
    policy_file.write_text(policy_file.read_text("utf-8") + "# edited\n", encoding="utf-8")
    before = _snapshot(home)
    again = _init(production, "--production")
    assert again.returncode == 0, again.stderr
    assert _snapshot(home) == before
    assert "Nothing changed" in again.stdout
    assert "created " not in again.stdout
    for path in _files(home).values():
        assert f"kept     {path}  (0600" in again.stdout


def test_it_prints_the_numbered_next_steps(
    first_run: tuple[dict[str, str], subprocess.CompletedProcess[str]],
) -> None:
    out = first_run[1].stdout
    steps = out[out.index("Next steps:") :]
    numbered = [m.group(1) for m in re.finditer(r"^\s*(\d+)\. ", steps, re.M)]
    assert len(numbered) >= 8
    assert [int(n) for n in numbered] == list(range(1, len(numbered) + 1))
    for needle in (
        "DATABASE_URL",
        "postgres://",
        "VIGIE_ALLOWED_HOSTS",
        "vigie guard check-policy",
        "vigie migrate",
        "vigie createsuperuser",
        "deploy/nginx/vigie.conf",
        "deploy/systemd",
        "vigie keys export",
        "vigie backup create",
        "vigie check",
    ):
        assert needle in steps, needle
    # In the order they must be done.
    order = ["DATABASE_URL", "vigie migrate", "vigie createsuperuser", "vigie keys export"]
    assert [steps.index(n) for n in order] == sorted(steps.index(n) for n in order)


def test_it_refuses_demo_mode(production: dict[str, str]) -> None:
    home = Path(production["VIGIE_HOME"])
    result = _init({**production, "VIGIE_MODE": "demo"}, "--production")
    assert result.returncode == 2
    assert "VIGIE_MODE=production" in result.stderr
    assert not home.exists()


def test_it_wants_production_said_explicitly(production: dict[str, str]) -> None:
    home = Path(production["VIGIE_HOME"])
    result = _init(production)
    assert result.returncode == 2
    assert "vigie init --production" in result.stderr
    assert not home.exists()


def test_it_wants_vigie_home_set(production: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in production.items() if k != "VIGIE_HOME"}
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = _init(env, "--production", cwd=workdir)
    assert result.returncode == 2
    assert "VIGIE_HOME" in result.stderr
    assert list(workdir.iterdir()) == []  # no keys dropped in ./var


def test_a_secret_key_from_the_environment_is_not_written(production: dict[str, str]) -> None:
    home = Path(production["VIGIE_HOME"])
    env = {**production, "VIGIE_SECRET_KEY": "k" * 64}
    result = _init(env, "--production")
    assert result.returncode == 0, result.stderr
    assert not (keys_dir(home) / "secret_key").exists()
    assert _mode(keys_dir(home) / "keyring.json") == 0o600
    assert "secret key from the environment" in result.stdout
