from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def checkpoint_file(tmp_path: Path, settings) -> Path:
    """Each test signs into its own checkpoint file: checkpoints of rolled-back test events
    must not haunt the next test's verify."""
    path = tmp_path / "audit" / "checkpoints.jsonl"
    settings.VIGIE_AUDIT_CHECKPOINT_FILE = path
    return path


@pytest.fixture(autouse=True)
def watch_heartbeat_file(tmp_path: Path, settings) -> Path:
    path = tmp_path / "audit" / "watch.heartbeat"
    settings.VIGIE_AUDIT_WATCH_HEARTBEAT_FILE = path
    return path
