"""Build backend: setuptools, plus the static assets collected into the wheel at build time.

An installed Vigie serves /static/ from `vigie/static_collected/` inside its own package
(vigie.settings picks that folder when it exists), so a clinic never runs collectstatic and
needs no writable static folder. A source checkout or an editable install has no such folder
and collects into VIGIE_HOME/static when `vigie serve` starts, as before.

The collection is Django's own collectstatic under the real vigie.settings, run on the built
copy of the package: the wheel carries exactly what `vigie collectstatic` would have gathered
(Django's admin, django-otp's assets, vigie/static). For that the build environment gets the
runtime dependencies at the versions pinned in requirements/base.txt, so the admin's CSS in
the wheel is the one of the Django the clinic installs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# setuptools ships type hints only from 69.x; the venv's may be older, hence the ignores.
from setuptools import build_meta as _setuptools  # type: ignore[import-untyped, unused-ignore]
from setuptools.build_meta import (  # type: ignore[import-untyped, unused-ignore]
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)
from setuptools.command.build_py import build_py  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "BuildPy",
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

ROOT = Path(__file__).resolve().parent
PINNED = ROOT / "requirements" / "base.txt"
# Inside the package; vigie.settings looks for this exact name.
COLLECTED = "static_collected"


def pinned_runtime() -> list[str]:
    """`name==version` for every requirement of requirements/base.txt (hashes left out)."""
    pins = []
    for line in PINNED.read_text(encoding="utf-8").splitlines():
        if not line or line[0] in "# -":
            continue  # comments, `--hash=` continuation lines, options
        pins.append(line.removesuffix("\\").strip())
    if not pins:
        raise RuntimeError(f"no pinned requirement found in {PINNED}")
    return pins


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *pinned_runtime()]


def collect_static(build_lib: Path) -> Path:
    """Run collectstatic for the built package in `build_lib`; return the folder it filled."""
    build_lib = build_lib.resolve()
    target = build_lib / "vigie" / COLLECTED
    with tempfile.TemporaryDirectory(prefix="vigie-build-") as home:
        env = {
            # Only what settings need: a throwaway VIGIE_HOME (nothing is created in it), the
            # target, and the built package first on the path (not the source tree).
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(build_lib),
            "DJANGO_SETTINGS_MODULE": "vigie.settings",
            "VIGIE_HOME": home,
            "VIGIE_STATIC_ROOT": str(target),
        }
        subprocess.run(  # fixed argv: this interpreter, Django's own command
            # -B: no __pycache__ written into the built package (it would end up in the wheel).
            [sys.executable, "-B", "-m", "django", "collectstatic", "--noinput", "--clear", "-v0"],
            env=env,
            cwd=home,
            check=True,
        )
    if not any(target.rglob("*.css")):
        raise RuntimeError(f"collectstatic left no stylesheet in {target}")
    return target


class BuildPy(build_py):  # type: ignore[misc, unused-ignore]  # untyped in older setuptools
    """setuptools' build_py, then collectstatic into the built package (wheels only)."""

    def run(self) -> None:
        super().run()
        # Editable installs read the source tree; their static files stay collected at run
        # time into VIGIE_HOME/static, so the checkout never gets a stale copy.
        if getattr(self, "editable_mode", False) or self.dry_run:
            return
        collect_static(Path(self.build_lib))
