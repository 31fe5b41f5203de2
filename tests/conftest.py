"""Whole-system tests: real `vigie` processes on their own VIGIE_HOME and database.

When DATABASE_URL points at PostgreSQL (CI's second run), each test gets a fresh database of
its own on that server, so the same drills run on both engines.
"""

from __future__ import annotations

import os
import secrets
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

VIGIE = [sys.executable, "-m", "vigie"]


@dataclass
class System:
    home: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **extra}
        result = subprocess.run(
            [*VIGIE, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"vigie {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        process: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
            argv, env=self.env, text=True, **kwargs
        )
        return process


def first_line(process: subprocess.Popen[str], deadline: float) -> str:
    """The first line `process` prints, or "" if it prints none before `deadline` (a
    `time.monotonic()` value) or exits first."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                return process.stdout.readline()
            if process.poll() is not None:
                return ""
    return ""


def _base_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    # The keys beside the data, never in it, and never in the host's /etc/vigie/keys (the
    # production default) even when a test switches to VIGIE_MODE=production.
    env.update(
        VIGIE_HOME=str(home),
        VIGIE_KEYS_DIR=str(keys_dir(home)),
        VIGIE_MODE="test",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CREDENTIALS_DIRECTORY", None)
    return env


def keys_dir(home: Path) -> Path:
    """Where a whole-system test's keys live: beside its VIGIE_HOME (home -> home-keys)."""
    return home.with_name(f"{home.name}-keys")


@pytest.fixture
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database when the run targets PostgreSQL, else None (SQLite)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield None
        return
    import psycopg

    name = f"vigie_sys_{secrets.token_hex(4)}"
    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def system(tmp_path: Path, postgres_url: str | None) -> System:
    """A migrated Vigie installation with its own keyring, ready for real processes."""
    env = _base_env(tmp_path / "home")
    if postgres_url:
        env["DATABASE_URL"] = postgres_url
    sys_ = System(home=tmp_path / "home", env=env)
    sys_.run("keys", "init")
    sys_.run("migrate", "--no-input")
    return sys_


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment with a VIGIE_HOME and nothing created in it yet."""
    return _base_env(tmp_path / "home")
