"""For tests in any app that need `record()` to really commit (`transactional_db`).

Django flushes such databases after each test with DELETE (SQLite) or TRUNCATE
(PostgreSQL), both refused by the append-only triggers. Use the fixture in a conftest::

    from vigie.audit.testing import audit_committing  # noqa: F401 (a pytest fixture)

and request it instead of `transactional_db`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from vigie.audit.immutability import drop_triggers, install_triggers
from vigie.audit.log import close_appender_connection


@pytest.fixture
def audit_committing(transactional_db: None) -> Iterator[None]:
    install_triggers(connection)
    yield
    # The appender thread's connection would keep the test database busy (PostgreSQL
    # refuses to drop it) or hold SQLite's shared-cache lock during the flush.
    close_appender_connection()
    drop_triggers(connection)
