"""The system checks `vigie serve` no longer runs before granian run in each worker instead."""

from __future__ import annotations

import pytest
from django.core import checks

pytestmark = pytest.mark.django_db  # importing vigie.wsgi runs preflight, which connects


def _refuse() -> None:
    from vigie import wsgi

    wsgi._refuse_on_system_check_errors()


def test_a_worker_refuses_to_serve_on_a_system_check_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _refuse()  # the real checks pass: the worker serves
    broken = [checks.Error("the URLconf is broken", id="vigie.E999")]
    monkeypatch.setattr(checks, "run_checks", lambda *a, **k: broken)
    with pytest.raises(SystemExit) as stopped:
        _refuse()
    assert stopped.value.code == 2
    assert "vigie: error: " in capsys.readouterr().err


def test_a_worker_serves_despite_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(checks, "run_checks", lambda *a, **k: [checks.Warning("mind this")])
    _refuse()
    assert "vigie: warning: " in capsys.readouterr().err
