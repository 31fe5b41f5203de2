"""`vigie check` on the database a node writes to: the primary, with a synchronous standby."""

from __future__ import annotations

import pytest
from django.db import connection

from vigie.ops.check_base import FAILURE, OK, WARNING, Context
from vigie.ops.checks_nodes import Standby, check_database_replication, replication_finding

SYNC = Standby("standby-b", "streaming", "sync", 0.02)
ASYNC = Standby("standby-c", "streaming", "async", 1.5)


def test_a_node_writing_to_a_standby_fails_and_says_how_to_follow_failovers() -> None:
    finding = replication_finding(True, "on", [])
    assert finding.status == FAILURE
    assert "standby" in finding.message
    assert "target_session_attrs=read-write" in finding.fix


def test_a_primary_alone_is_said_not_warned_about() -> None:
    # One database server is a valid clinic installation; the message says what it risks.
    finding = replication_finding(False, "on", [])
    assert finding.status == OK
    assert "no standby" in finding.message
    assert "restored from a backup" in finding.message


def test_only_asynchronous_standbys_can_lose_acknowledged_writes() -> None:
    finding = replication_finding(False, "on", [ASYNC])
    assert finding.status == WARNING
    assert "asynchronous" in finding.message
    assert "standby-c (streaming, async, replay lag 1.5 s)" in finding.message


def test_a_synchronous_standby_is_ok_unless_commits_do_not_wait_for_it() -> None:
    finding = replication_finding(False, "on", [SYNC, ASYNC])
    assert finding.status == OK
    assert "standby-b (streaming, sync" in finding.message
    for setting in ("off", "local"):
        relaxed = replication_finding(False, setting, [SYNC])
        assert relaxed.status == WARNING, setting
        assert setting in relaxed.message


def test_a_role_that_cannot_see_the_standbys_is_told_which_grant_to_ask_for() -> None:
    finding = replication_finding(False, "on", [Standby("standby-b", None, None, None)])
    assert finding.status == WARNING
    assert "pg_monitor" in finding.fix


@pytest.mark.django_db
def test_it_reads_the_real_databases_role() -> None:
    connection.ensure_connection()
    finding = check_database_replication(Context(database_reachable=True))
    if connection.vendor == "postgresql":
        # The test server is a primary with no standby.
        assert finding.status == OK
        assert "primary with no standby" in finding.message
    else:
        assert finding.status == OK
        assert finding.message.startswith("SQLite")


def test_an_unreachable_database_is_not_judged() -> None:
    finding = check_database_replication(Context(database_reachable=False))
    assert finding.status == WARNING
    assert "not checked" in finding.message
