from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from vigie.audit import checkpoints
from vigie.audit import testing as tamper
from vigie.audit.checkpoints import CheckpointError, ensure_signing_key, load_signing_key
from vigie.audit.log import HeadState, record
from vigie.audit.models import AuditHead
from vigie.audit.verify import verify

pytestmark = pytest.mark.django_db


def test_it_creates_the_signing_key_private_and_never_overwrites_it(vault_home: Path) -> None:
    path = Path(settings.VIGIE_KEYS_DIR) / "audit-signing.key"
    assert ensure_signing_key() is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert ensure_signing_key() is False
    assert path.read_bytes() == before
    load_signing_key()


def test_a_signing_key_readable_by_others_is_refused(vault_home: Path) -> None:
    ensure_signing_key()
    path = Path(settings.VIGIE_KEYS_DIR) / "audit-signing.key"
    path.chmod(0o644)
    with pytest.raises(CheckpointError, match="chmod 600"):
        load_signing_key()


def test_it_signs_a_checkpoint_line_outside_the_database(checkpoint_file: Path) -> None:
    for _ in range(3):
        record("document.read")
    written = checkpoints.write_checkpoint(force=True)
    assert written is not None
    assert written.seq == 3
    line = json.loads(checkpoint_file.read_text())
    assert line["seq"] == 3
    assert line["hash"] == AuditHead.objects.get().hash
    assert stat.S_IMODE(checkpoint_file.stat().st_mode) == 0o600
    assert AuditHead.objects.get().checkpoint_seq == 3
    # Nothing new since: no second line.
    assert checkpoints.write_checkpoint(force=True) is None
    assert verify().checkpoints == 1


def test_a_checkpoint_is_due_every_1000_events_or_60_seconds(settings) -> None:
    now = timezone.now()
    assert not checkpoints.is_due(HeadState(5, "", 5, now))
    assert checkpoints.is_due(HeadState(1, "", 0, None))
    assert not checkpoints.is_due(HeadState(999, "", 0, now))
    assert checkpoints.is_due(HeadState(1000, "", 0, now))
    assert checkpoints.is_due(HeadState(10, "", 9, now - timedelta(seconds=61)))


def test_a_forged_checkpoint_line_is_reported(checkpoint_file: Path) -> None:
    record("document.read")
    checkpoints.write_checkpoint(force=True)
    forged = json.loads(checkpoint_file.read_text())
    forged["seq"] = 1
    forged["hash"] = "00" * 32
    with checkpoint_file.open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
    result = verify()
    assert not result.ok
    assert result.first is not None
    assert "bad signature" in result.first.detail


def test_a_garbled_checkpoint_file_is_reported(checkpoint_file: Path) -> None:
    record("document.read")
    checkpoints.write_checkpoint(force=True)
    with checkpoint_file.open("a") as handle:
        handle.write("{not json\n")
    result = verify()
    assert not result.ok
    assert "line 2" in str(result.problems[0])


def test_verify_command_exits_0_when_the_log_is_intact(capsys) -> None:
    for _ in range(4):
        record("document.read")
    checkpoints.write_checkpoint(force=True)
    call_command("audit", "verify", "--quiet")
    assert "audit log OK: 4 events, 1 signed checkpoints" in capsys.readouterr().out


def test_verify_command_names_the_first_bad_sequence_number_and_exits_1(capsys) -> None:
    for _ in range(6):
        record("document.read")
    checkpoints.write_checkpoint(force=True)
    tamper.disarm()
    tamper.set_column(4, "reason", "nothing happened")
    tamper.execute("DELETE FROM audit_auditevent WHERE seq = 5")
    with pytest.raises(CommandError) as raised:
        call_command("audit", "verify", "--quiet")
    assert raised.value.returncode == 1
    out = capsys.readouterr().out
    assert "first bad seq 4: hash mismatch" in out


def test_checkpoint_command_signs_the_head(capsys, checkpoint_file: Path) -> None:
    record("document.read")
    call_command("audit", "checkpoint")
    assert "checkpoint at seq 1" in capsys.readouterr().out
    call_command("audit", "checkpoint")
    assert "nothing new" in capsys.readouterr().out
    assert checkpoint_file.stat().st_size > 0
