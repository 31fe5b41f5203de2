"""DATABASE_URL with libpq's list of servers (a primary and its standbys), as the settings
read it: HOST and PORT lists Django hands to libpq, a clear ConfigError for a broken list,
and a password never printed whatever the form."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connection, connections

from vigie.backup.database import pg_env
from vigie.lib import database_url
from vigie.lib.env import ConfigError
from vigie.lib.postgresql.base import DatabaseWrapper
from vigie.startup import redact_url

FAILOVER = "postgres://vigie:s3cret@db1.example:5432,db2.example:5433/vigie?target_session_attrs=read-write"


def test_it_reads_a_list_of_servers_into_host_and_port_lists() -> None:
    parsed = database_url.parse(FAILOVER, conn_max_age=60, conn_health_checks=True)
    assert parsed["ENGINE"] == "django.db.backends.postgresql"
    assert parsed["HOST"] == "db1.example,db2.example"
    assert parsed["PORT"] == "5432,5433"
    assert parsed["USER"] == "vigie"
    assert parsed["PASSWORD"] == "s3cret"
    assert parsed["NAME"] == "vigie"
    assert parsed["OPTIONS"] == {"target_session_attrs": "read-write"}
    assert parsed["CONN_MAX_AGE"] == 60
    assert parsed["CONN_HEALTH_CHECKS"] is True


def test_it_gives_a_server_without_a_port_the_default_one_when_another_names_one() -> None:
    parsed = database_url.parse("postgres://vigie@db1:6432,db2,[fd00::2]:5433/vigie")
    assert parsed["HOST"] == "db1,db2,fd00::2"
    assert parsed["PORT"] == "6432,5432,5433"


def test_it_leaves_the_port_to_libpq_when_no_server_names_one() -> None:
    parsed = database_url.parse("postgres://vigie@db1,db2/vigie")
    assert parsed["HOST"] == "db1,db2"
    assert parsed["PORT"] == ""


def test_it_reads_socket_folders_in_the_list() -> None:
    parsed = database_url.parse("postgres://vigie@%2Frun%2Fpostgresql,db2:5432/vigie")
    assert parsed["HOST"] == "/run/postgresql,db2"
    assert parsed["PORT"] == "5432,5432"


def test_a_single_server_is_read_as_before() -> None:
    parsed = database_url.parse("postgres://vigie:pw@db1:5433/vigie?sslmode=require")
    assert (parsed["HOST"], parsed["PORT"], parsed["PASSWORD"]) == ("db1", 5433, "pw")
    assert parsed["OPTIONS"] == {"sslmode": "require"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://vigie@db1:5432,,db2:5432/vigie", "server 2 of the list"),
        ("postgres://vigie@db1:5432,/vigie", "server 2 of the list 'db1:5432,' is empty"),
        (
            "postgres://vigie@db1:54x2,db2/vigie",
            "server 1 of the list 'db1:54x2,db2' has port '54x2'",
        ),
        ("postgres://vigie@db1:70000,db2/vigie", "not a number from 1 to 65535"),
        ("postgres://vigie@db1:0,db2/vigie", "has port '0'"),
        (
            "postgres://vigie@db1,db2:5432:1/vigie",
            "server 2 of the list 'db1,db2:5432:1' is not host[:port]",
        ),
        ("postgres://vigie@db1,[fd00::2/vigie", "server 2 of the list"),
        ("not a url, at all", "DATABASE_URL is not a valid database URL"),
    ],
)
def test_a_malformed_list_is_a_config_error_naming_the_server(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as caught:
        database_url.parse(url)
    assert message in str(caught.value)


def test_django_hands_both_lists_to_libpq() -> None:
    settings_dict: dict[str, Any] = {
        **connections["default"].settings_dict,
        **database_url.parse(FAILOVER),
        "ENGINE": "vigie.lib.postgresql",
    }
    params = DatabaseWrapper(settings_dict, alias="multi-host").get_connection_params()
    assert (params["host"], params["port"]) == ("db1.example,db2.example", "5432,5433")
    assert params["target_session_attrs"] == "read-write"
    # psycopg builds the same conninfo libpq reads (one attempt per server, in order).
    conninfo = psycopg.conninfo.make_conninfo(
        "", host=params["host"], port=params["port"], dbname="vigie"
    )
    assert psycopg.conninfo.conninfo_to_dict(conninfo)["port"] == "5432,5433"


def test_backups_connect_to_the_server_that_takes_writes() -> None:
    env = pg_env(database_url.parse(FAILOVER))
    assert (env["PGHOST"], env["PGPORT"]) == ("db1.example,db2.example", "5432,5433")
    assert env["PGTARGETSESSIONATTRS"] == "read-write"


def test_the_password_is_hidden_in_a_list_of_servers_too() -> None:
    shown = redact_url(FAILOVER)
    assert shown == (
        "postgres://vigie:***@db1.example:5432,db2.example:5433/vigie"
        "?target_session_attrs=read-write"
    )
    assert redact_url("postgres://vigie@db1:5432,db2:5432/vigie") == (
        "postgres://vigie@db1:5432,db2:5432/vigie"
    )


@pytest.mark.django_db
def test_a_connection_skips_a_dead_server_for_the_next_in_the_list() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs the PostgreSQL server of the test run")
    real = connections["default"].settings_dict
    settings_dict: dict[str, Any] = {
        **real,
        # Port 1 refuses at once; the second entry is the real server.
        "HOST": f"{real['HOST'] or '127.0.0.1'},{real['HOST'] or '127.0.0.1'}",
        "PORT": f"1,{real['PORT'] or 5432}",
        "OPTIONS": {**real.get("OPTIONS", {}), "target_session_attrs": "read-write"},
    }
    own = DatabaseWrapper(settings_dict, alias="multi-host-live")
    try:
        with own.cursor() as cursor:
            cursor.execute("SELECT inet_server_port(), pg_is_in_recovery()")
            assert cursor.fetchone() == (int(real["PORT"] or 5432), False)
    finally:
        own.close()
