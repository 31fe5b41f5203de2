"""Django's database sessions, read with one prepared statement instead of an ORM query.

Every request of a signed-in user loads its session; the ORM spent several times the
database's time building that SELECT. Everything else (saving, cycling keys, expiry,
encoding, signing) is Django's `db` backend unchanged, on the same table: switching the
engine keeps every session valid. The condition is the backend's own: this key, not
expired. `test_session_store` holds the two to the same answers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.db import connections, router
from django.utils import timezone

from vigie.lib import rawsql


class SessionStore(DatabaseSessionStore):
    _sql: ClassVar[dict[str, str]] = {}

    @classmethod
    def _statement(cls, alias: str) -> str:
        sql = cls._sql.get(alias)
        if sql is None:
            conn = connections[alias]

            def col(name: str) -> str:
                return rawsql.column(Session, name, conn)

            sql = cls._sql[alias] = (
                f"SELECT {col('session_data')} FROM {rawsql.table(Session, conn)}"  # noqa: S608 - model names
                f" WHERE {col('session_key')} = %s AND {col('expire_date')} > %s"
            )
        return sql

    def _get_session_from_db(self) -> Any:
        alias = router.db_for_read(self.model)
        conn = connections[alias]
        now = conn.ops.adapt_datetimefield_value(timezone.now())
        with conn.cursor() as cursor:
            cursor.execute(self._statement(alias), [self.session_key, now])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        # load() reads only session_data from what this returns.
        return self.model(session_key=self.session_key or "", session_data=row[0])
