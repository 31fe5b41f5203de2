"""The system checks `vigie serve` no longer runs before granian run in each worker instead."""

from __future__ import annotations

from types import ModuleType

import pytest
from django.core import checks

pytestmark = pytest.mark.django_db  # importing vigie.wsgi runs preflight, which connects


@pytest.fixture(autouse=True)
def wsgi(db: None) -> ModuleType:
    """vigie.wsgi, imported before `capsys` replaces sys.stderr (autouse fixtures come first).

    Its first import sets Django up again (preflight, then the WSGI application), and
    Django's setup configures logging: the console handler takes the sys.stderr of that
    moment. Under capsys that stream is closed after the test, and every record logged later
    in the session failed to be written ("--- Logging error ---", ValueError: I/O operation
    on closed file).
    """
    from vigie import wsgi

    return wsgi


def test_a_worker_refuses_to_serve_on_a_system_check_error(
    wsgi: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wsgi._refuse_on_system_check_errors()  # the real checks pass: the worker serves
    broken = [checks.Error("the URLconf is broken", id="vigie.E999")]
    monkeypatch.setattr(checks, "run_checks", lambda *a, **k: broken)
    with pytest.raises(SystemExit) as stopped:
        wsgi._refuse_on_system_check_errors()
    assert stopped.value.code == 2
    assert "vigie: error: " in capsys.readouterr().err


def test_a_worker_serves_despite_a_warning(
    wsgi: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(checks, "run_checks", lambda *a, **k: [checks.Warning("mind this")])
    wsgi._refuse_on_system_check_errors()
    assert "vigie: warning: " in capsys.readouterr().err
