"""The cluster-wide jobs behind their singletons: `vigie once`, the key changes, the decoys,
and what `vigie check` says about who holds them (on whichever database the suite runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from vigie.audit.checkpoints import read_checkpoints
from vigie.audit.log import record
from vigie.guard.models import Canary
from vigie.lib import singleton
from vigie.lib.singleton import Singleton
from vigie.ops.check_base import OK, Context
from vigie.ops.checks_nodes import check_singletons

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    # The messages are matched in English, whatever an earlier test left active.
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def checkpoint_file(tmp_path: Path, settings: pytest.FixtureRequest) -> None:
    # Each test signs into its own file (checkpoints of rolled-back events must not linger).
    settings.VIGIE_AUDIT_CHECKPOINT_FILE = tmp_path / "checkpoints.jsonl"  # type: ignore[attr-defined]


@pytest.fixture
def other_node() -> Iterator[Callable[[str], Singleton]]:
    """Take a job's lock as another node would (its own session or lock file)."""
    taken: list[Singleton] = []

    def take(name: str) -> Singleton:
        lock = Singleton(name)
        assert lock.acquire() is True
        taken.append(lock)
        return lock

    yield take
    for lock in taken:
        lock.release()


def _once(*args: str) -> str:
    out = StringIO()
    call_command("once", *args, stdout=out)
    return out.getvalue()


def test_once_runs_the_command_when_no_node_holds_the_job() -> None:
    record("document.read")
    _once("backup", "audit", "checkpoint")
    assert [c.seq for c in read_checkpoints()[0]] == [1]


def test_once_skips_the_command_while_another_node_holds_the_job(
    other_node: Callable[[str], Singleton],
) -> None:
    record("document.read")
    other_node(singleton.BACKUP)
    assert "skipped: another node holds backup" in _once("backup", "audit", "checkpoint")
    assert read_checkpoints()[0] == []


def test_once_refuses_an_unknown_job() -> None:
    with pytest.raises(CommandError):
        _once("everything", "audit", "checkpoint")


def test_keys_rotate_refuses_while_another_node_changes_the_keys(
    vault_home: Path,
    other_node: Callable[[str], Singleton],
) -> None:
    from vigie import vault

    before = vault.get_keyring().active_id
    other_node(singleton.KEY_ROTATION)
    with pytest.raises(CommandError, match="another node is changing the keys") as caught:
        call_command("keys", "rotate", stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 2
    assert vault.get_keyring().active_id == before


def test_canary_create_refuses_while_another_node_creates_decoys(
    other_node: Callable[[str], Singleton],
) -> None:
    other_node(singleton.DECOYS)
    with pytest.raises(CommandError, match="another node is creating decoys"):
        call_command("canary", "create", stdout=StringIO())
    assert not Canary.objects.exists()


def test_check_names_the_node_holding_each_job(other_node: Callable[[str], Singleton]) -> None:
    ctx = Context(database_reachable=True, database_migrated=True)
    assert "audit-watch: nobody" in check_singletons(ctx).message
    other_node(singleton.AUDIT_WATCH)
    finding = check_singletons(ctx)
    assert finding.status == OK
    assert f"audit-watch: {singleton.node_name()}" in finding.message
    assert "backup: nobody" in finding.message


def test_check_fails_when_one_hosts_guard_is_silent_while_another_beats() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from vigie.audit.models import AuditEvent
    from vigie.guard.heartbeat import beat
    from vigie.guard.models import GuardHost
    from vigie.ops.check_base import FAILURE
    from vigie.ops.checks_nodes import check_guard_hosts

    ctx = Context(database_reachable=True, database_migrated=True)
    beat()
    GuardHost.objects.create(
        host="node-b", pid=7, last_heartbeat=timezone.now() - timedelta(hours=1)
    )
    finding = check_guard_hosts(ctx)
    assert finding.status == FAILURE
    assert "node-b" in finding.message
    assert "vigie guard forget HOST" in finding.fix

    # node-b was taken out of the group: forgetting it is audited, and the check passes.
    out = StringIO()
    call_command("guard", "forget", "node-b", stdout=out)
    assert "forgot guard host node-b" in out.getvalue()
    assert AuditEvent.objects.filter(action="guard.host.forgotten", extra__host="node-b").exists()
    assert check_guard_hosts(ctx).status == OK
    with pytest.raises(CommandError, match="no guard host named node-b"):
        call_command("guard", "forget", "node-b", stdout=StringIO())
