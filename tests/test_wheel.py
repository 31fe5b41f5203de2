"""Packaging: a wheel built from the repository installs the way a clinic installs it.

Pinned and hashed runtime dependencies (requirements/base.txt, --require-hashes), then the
wheel alone, in a fresh virtual environment; then `vigie demo --no-serve` and `python -m vigie`
run from outside the repository, with nothing but VIGIE_HOME and VIGIE_MODE set. The static
assets must come collected inside the wheel: nothing is collected at run time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

REPO = Path(__file__).resolve().parent.parent


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build and install the wheel (make venv installs it)")
    return found


def _run(
    argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, env=env, cwd=cwd, timeout=timeout, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def _source_files() -> set[str]:
    """Every file of the vigie package in the checkout (tracked or new, not ignored)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "vigie"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        listed = [str(p.relative_to(REPO)) for p in (REPO / "vigie").rglob("*") if p.is_file()]
    return {
        name
        for name in listed
        if "__pycache__" not in name and (REPO / name).is_file()  # deleted, not yet committed
    }


def test_wheel_installs_with_pinned_deps_and_runs_the_demo(tmp_path: Path) -> None:
    uv = _uv()
    uv_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIE_", "DJANGO_"))}
    uv_env.pop("VIRTUAL_ENV", None)

    # Build: sdist first, then the wheel from the sdist, so the sdist is proven complete too.
    dist = tmp_path / "dist"
    _run([uv, "build", "--out-dir", str(dist), str(REPO)], env=uv_env, cwd=tmp_path)
    (wheel,) = dist.glob("vigie-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_files() - names)
    assert missing == [], f"files of the package left out of the wheel: {missing}"
    collected = {n for n in names if n.startswith("vigie/static_collected/")}
    for asset in ("vigie/vigie.css", "admin/css/base.css", "admin/js/core.js"):
        assert f"vigie/static_collected/{asset}" in collected, asset
    assert "vigie/locale/fr/LC_MESSAGES/django.mo" in names
    assert any(n.startswith("vigie/records/migrations/0001") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "build_hooks")) for n in names)
    assert not any("__pycache__" in n for n in names), "bytecode from the build in the wheel"

    # Install as a clinic does: every dependency pinned and hashed, then the wheel alone.
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([uv, "venv", "--python", sys.executable, str(venv)], env=uv_env, cwd=tmp_path)
    pinned = REPO / "requirements" / "base.txt"
    _run(
        [uv, "pip", "install", "--python", str(python), "--require-hashes", "-r", str(pinned)],
        env=uv_env,
        cwd=tmp_path,
    )
    _run(
        [uv, "pip", "install", "--python", str(python), "--no-deps", str(wheel)],
        env=uv_env,
        cwd=tmp_path,
    )
    _run([uv, "pip", "check", "--python", str(python)], env=uv_env, cwd=tmp_path)

    # Run it from outside the checkout, with nothing of the repository on the path.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = tmp_path / "home"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "VIGIE_HOME": str(home),
        "VIGIE_MODE": "demo",
    }

    where = _run(
        [
            str(python),
            "-c",
            "import json, django, vigie; django.setup();"
            "from django.conf import settings;"
            "from vigie.ops.management.commands.serve import granian_argv;"
            "argv = granian_argv(host='127.0.0.1', port=8000, workers=1, threads=1,"
            " cert=None, key=None);"
            "print(json.dumps({'vigie': vigie.__file__, 'static_root': str(settings.STATIC_ROOT),"
            " 'packaged': settings.VIGIE_STATIC_PACKAGED, 'argv': argv}))",
        ],
        env={**env, "DJANGO_SETTINGS_MODULE": "vigie.settings"},
        cwd=elsewhere,
    )
    info = json.loads(where.stdout.strip().splitlines()[-1])
    package = Path(info["vigie"]).parent
    assert package.is_relative_to(venv), info
    static_root = Path(info["static_root"])
    assert static_root == package / "static_collected"
    assert info["packaged"] is True
    assert (static_root / "vigie" / "vigie.css").is_file()
    assert (static_root / "admin" / "css" / "base.css").is_file()
    # `vigie serve` gives granian no static route: Django serves STATIC_ROOT (above), headers and all.
    assert "--static-path-route" not in info["argv"]

    demo = _run(
        [str(venv / "bin" / "vigie"), "demo", "--no-serve"], env=env, cwd=elsewhere, timeout=600
    )
    assert "admin.it" in demo.stdout  # the logins are printed
    assert (home / "demo-credentials.json").is_file()
    assert not (home / "static").exists(), "static files were collected at run time"

    helped = _run([str(python), "-m", "vigie", "--help"], env=env, cwd=elsewhere, timeout=120)
    for command in ("demo", "serve", "migrate"):
        assert command in helped.stdout.split(), helped.stdout
    assert not (home / "static").exists()
