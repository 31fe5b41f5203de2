"""An installation's pieces for the tests of `vigie check` (plain code, no pytest: see
tests/test_test_helpers.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from vigie.lib.testing import self_signed

POLICY = """\
[maintenance]
ports = [8443]

[[listener]]
name = "portal"
address = "0.0.0.0"
port = 8443
exposure = "public"
sources = ["192.168.10.0/24"]
"""


HOST = "portail.clinique.example"


def make_certificate(folder: Path, *, days: int = 90) -> tuple[Path, Path]:
    """A self-signed certificate for HOST and its key, PEM files in `folder` (key mode 0600)."""
    now = datetime.now(UTC)
    return self_signed(
        folder,
        HOST,
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=days),
        names=("portal.crt", "portal.key"),
    )
